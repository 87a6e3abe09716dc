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

  # Role name => ARN, for the deployer roles that exist (a role name matches
  # one role at most).
  deployer_roles     = { for name, r in data.aws_iam_roles.deployer : name => one(r.arns) if length(r.arns) > 0 }
  deployer_role_arns = sort(values(local.deployer_roles))

  # Three private /20s (nodes and pods: the VPC CNI gives every pod a VPC IP)
  # and three public /24s (NAT gateways and the internet-facing NLB).
  private_subnets = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  # Cluster admins: the cluster-admin role (access.tf), which the Terraform
  # runner and operators assume, plus any principals listed explicitly.
  # Nobody gets admin for having run an apply. Keyed by something that
  # names the principal, never by list position, so removing one principal
  # leaves the others' entries alone. (The role's ARN is only known after
  # it is created, and for_each keys must be known at plan: it has a fixed
  # key of its own.)
  admin_principals = merge(
    { "cluster-admin" = aws_iam_role.cluster_admin.arn },
    { for arn in var.admin_principal_arns : "admin-${arn}" => arn },
  )
  admin_access_entries = {
    for key, arn in local.admin_principals : key => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # The deploy roles, keyed by role name: each is in the Kubernetes group
  # bound to the deployer Role in the service's namespace (access.tf), which
  # allows exactly the kinds kubernetes/ holds and no Secrets. No EKS access
  # policy: AmazonEKSEditPolicy would include Secrets.
  deployer_access_entries = {
    for name, arn in local.deployer_roles : "deployer-${name}" => {
      principal_arn     = arn
      kubernetes_groups = [local.deployer_group]
    }
  }
}

# The access entries were keyed by list position before. These move the
# entries that every cluster made with the defaults has (the cluster-admin
# role at admin-0, the default deploy role at deployer-0) to their new keys,
# so an upgrade keeps them. A moved block cannot follow what only variables
# know: an entry of admin_principal_arns, or of a deploy role other than the
# default, is destroyed and created again under its new key in the upgrade's
# apply; should the create run before the delete has finished, it fails with
# ResourceInUseException and a second apply completes it. The deployer's old
# AmazonEKSEditPolicy association is destroyed: the deployer Role replaces it.
moved {
  from = module.eks.aws_eks_access_entry.this["admin-0"]
  to   = module.eks.aws_eks_access_entry.this["cluster-admin"]
}

moved {
  from = module.eks.aws_eks_access_policy_association.this["admin-0_admin"]
  to   = module.eks.aws_eks_access_policy_association.this["cluster-admin_admin"]
}

moved {
  from = module.eks.aws_eks_access_entry.this["deployer-0"]
  to   = module.eks.aws_eks_access_entry.this["deployer-flight-counter-github-deploy"]
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

  # The private endpoint always; the public one only for the CIDRs listed,
  # which must name at least one range (variables.tf): this root installs the
  # namespace and the Helm releases through the API, so a closed endpoint
  # would fail half-way through an apply.
  endpoint_public_access       = true
  endpoint_private_access      = true
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  # Pods get AWS credentials from EKS Pod Identity only: no IAM OIDC provider
  # for IRSA (its thumbprint would be read from the issuer's certificate
  # chain at every plan).
  enable_irsa = false

  # The secrets-encryption key's administrators: the principals that may
  # assume the cluster-admin role. Left empty, the module would name
  # whoever runs the apply, and the key policy would change with them.
  kms_key_administrators = var.cluster_admin_role_trusted_arns

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.log_retention_days

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = false
  access_entries                           = merge(local.admin_access_entries, local.deployer_access_entries)

  # Add-on versions: those pinned in addon_versions, else the newest AWS
  # publishes for kubernetes_version, read at plan time (see "What a re-apply
  # changes" in docs/deploy-aws.md).
  addons = {
    vpc-cni = {
      addon_version  = lookup(var.addon_versions, "vpc-cni", null)
      before_compute = true
      # Enforce the service's NetworkPolicy.
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
      })
    }
    eks-pod-identity-agent = {
      addon_version  = lookup(var.addon_versions, "eks-pod-identity-agent", null)
      before_compute = true
    }
    kube-proxy = {
      addon_version = lookup(var.addon_versions, "kube-proxy", null)
    }
    coredns = {
      addon_version = lookup(var.addon_versions, "coredns", null)
    }
    # CPU metrics for the HorizontalPodAutoscaler.
    metrics-server = {
      addon_version = lookup(var.addon_versions, "metrics-server", null)
    }
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

      # The AMI release chosen when the group is made (or node_ami_release_version),
      # not the newest one read from SSM at every plan: a re-apply never rolls
      # the nodes by itself. Karpenter's nodes take patched AMIs on their own.
      use_latest_ami_release_version = false
      ami_release_version            = var.node_ami_release_version
      capacity_type                  = var.node_capacity_type

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
      variable = "aws:RequestTag/eks-cluster-arn"
      values   = [module.eks.cluster_arn]
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
# (many routes in one read), UpdateItem (ADD to the counter, on route items),
# PutItem (key and batch records written inside TransactWriteItems, which is
# authorised item by item with the actions of its parts: PutItem for each
# Put) and DescribeTable (readiness). CreateTable is for local development
# only.
#
# The service's only Puts are the key records `idem#<key>` and the batch
# records `batch#<id>` (app/src/store/dynamodb: KEY_RECORD_PREFIX,
# BATCH_RECORD_PREFIX), so PutItem is limited to partition keys with those
# prefixes: stolen credentials cannot overwrite a route's item with a Put.
# Routes never contain `#`. The Null condition refuses a request without
# the key in its context (ForAllValues alone would match an empty set).
data "aws_iam_policy_document" "service_dynamodb" {
  statement {
    sid = "CountsTable"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:UpdateItem",
    ]
    resources = [data.aws_dynamodb_table.counts.arn]
  }

  statement {
    sid       = "KeyAndBatchRecordsOnly"
    actions   = ["dynamodb:PutItem"]
    resources = [data.aws_dynamodb_table.counts.arn]

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["idem#*", "batch#*"]
    }

    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
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
