data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# The counts table of the dynamodb root, found by name: no ARN to pass between
# roots, and an apply that forgets a flag cannot change the service's policy.
data "aws_dynamodb_table" "counts" {
  name = var.table_name
}

# The CI deploy role of the ecr-repo root, found by name. The plural data
# source returns an empty set (no access entry) until ecr-repo creates it,
# and the entry appears with the next apply after that.
data "aws_iam_roles" "deployer" {
  for_each   = toset(var.deployer_role_names)
  name_regex = "^${each.value}$"
}

locals {
  partition = data.aws_partition.current.partition

  deployer_role_arns = sort(flatten([for r in data.aws_iam_roles.deployer : tolist(r.arns)]))

  # Three private /20s (nodes and pods: the VPC CNI gives every pod a VPC IP)
  # and three public /24s (NAT gateways and the internet-facing NLB).
  private_subnets = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  # Cluster admins: the cluster-admin role below, which the Terraform runner
  # and operators assume, plus any principals listed explicitly. Nobody gets
  # admin for having run an apply.
  admin_access_entries = {
    for i, arn in concat([aws_iam_role.cluster_admin.arn], var.admin_principal_arns) : "admin-${i}" => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # The deploy role may only change objects in the service's namespace: all
  # of kubernetes/ is namespaced (the Namespace itself is made here, below),
  # so `kubectl apply -k --server-side` and `rollout status` need no more.
  deployer_access_entries = {
    for i, arn in local.deployer_role_arns : "deployer-${i}" => {
      principal_arn = arn
      policy_associations = {
        edit = {
          policy_arn = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
          access_scope = {
            type       = "namespace"
            namespaces = [var.service_namespace]
          }
        }
      }
    }
  }
}

module "vpc" {
  # checkov:skip=CKV_TF_1:Registry module pinned by version constraint; registry sources cannot be pinned to a commit hash
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.6"

  name = var.cluster_name
  cidr = var.vpc_cidr
  azs  = var.availability_zones

  private_subnets = local.private_subnets
  public_subnets  = local.public_subnets

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # Subnet discovery for Service type LoadBalancer (internal NLBs in the
  # private subnets, internet-facing ones in the public subnets), and for the
  # nodes Karpenter launches.
  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = "1"
    "karpenter.sh/discovery"          = var.cluster_name
  }

  enable_flow_log                                 = var.enable_flow_log
  create_flow_log_cloudwatch_log_group            = var.enable_flow_log
  create_flow_log_cloudwatch_iam_role             = var.enable_flow_log
  flow_log_max_aggregation_interval               = 60
  flow_log_cloudwatch_log_group_retention_in_days = var.log_retention_days
}

# DynamoDB traffic from the pods stays on the AWS network and does not pay
# NAT gateway data processing.
resource "aws_vpc_endpoint" "dynamodb" {
  vpc_id            = module.vpc.vpc_id
  service_name      = "com.amazonaws.${var.aws_region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = concat(module.vpc.private_route_table_ids, module.vpc.public_route_table_ids)

  tags = {
    Name = "${var.cluster_name}-dynamodb"
  }
}

module "eks" {
  # checkov:skip=CKV_TF_1:Registry module pinned by version constraint; registry sources cannot be pinned to a commit hash
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.19"

  name               = var.cluster_name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # The private endpoint always; the public one only for the CIDRs listed
  # (none by default).
  endpoint_public_access       = length(var.endpoint_public_access_cidrs) > 0
  endpoint_private_access      = true
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = false
  access_entries                           = merge(local.admin_access_entries, local.deployer_access_entries)

  addons = {
    vpc-cni = {
      before_compute = true
      # Enforce the service's NetworkPolicy.
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
      })
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
    kube-proxy = {}
    coredns    = {}
    # CPU metrics for the HorizontalPodAutoscaler.
    metrics-server = {}
  }

  # Karpenter finds the node security group by this tag.
  node_security_group_tags = {
    "karpenter.sh/discovery" = var.cluster_name
  }

  # A fixed base of nodes, one per AZ, for the cluster's own controllers
  # (CoreDNS, Karpenter, the load balancer controller) and the service's
  # first pods. Everything past it is launched by Karpenter (karpenter.tf).
  eks_managed_node_groups = {
    default = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.node_instance_types
      capacity_type  = var.node_capacity_type

      # One group over the three private subnets: the Auto Scaling group
      # balances nodes across the AZs.
      subnet_ids = module.vpc.private_subnets

      min_size     = var.node_count
      max_size     = var.node_count
      desired_size = var.node_count

      labels = {
        # Karpenter runs here, never on the nodes it manages.
        "karpenter.sh/controller" = "true"
      }

      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = var.node_disk_size_gb
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }

      # IMDSv2 only, and out of reach of pods: they get credentials from EKS
      # Pod Identity, never from the node role.
      metadata_options = {
        http_endpoint               = "enabled"
        http_tokens                 = "required"
        http_put_response_hop_limit = 1
      }

      update_config = {
        max_unavailable = 1
      }
    }
  }
}

# --- AWS access for the service's pods (EKS Pod Identity) -------------------

data "aws_iam_policy_document" "service_trust" {
  statement {
    sid     = "EksPodIdentity"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/eks-cluster-name"
      values   = [module.eks.cluster_name]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [var.service_namespace]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [var.service_account_name]
    }
  }
}

resource "aws_iam_role" "service" {
  name                 = "${var.cluster_name}-service"
  description          = "Assumed through EKS Pod Identity by ${var.service_namespace}/${var.service_account_name}"
  assume_role_policy   = data.aws_iam_policy_document.service_trust.json
  max_session_duration = 3600
}

# Exactly what the service calls: GetItem (consistent reads), BatchGetItem
# (many routes in one read), UpdateItem (ADD to the counter), PutItem (key and
# batch records written inside TransactWriteItems, which is authorised by the
# actions of its parts) and DescribeTable (readiness). CreateTable is for local
# development only.
data "aws_iam_policy_document" "service_dynamodb" {
  statement {
    sid = "CountsTable"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = [data.aws_dynamodb_table.counts.arn]
  }
}

resource "aws_iam_role_policy" "service_dynamodb" {
  name   = "dynamodb-counts-table"
  role   = aws_iam_role.service.id
  policy = data.aws_iam_policy_document.service_dynamodb.json
}

resource "aws_eks_pod_identity_association" "service" {
  cluster_name    = module.eks.cluster_name
  namespace       = var.service_namespace
  service_account = var.service_account_name
  role_arn        = aws_iam_role.service.arn
}
