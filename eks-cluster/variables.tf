variable "aws_region" {
  description = "AWS region of the VPC and cluster; must be the region of the DynamoDB table."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as us-east-1."
  }
}

variable "cluster_name" {
  description = "Name of the EKS cluster (also used to name the VPC and IAM roles)."
  type        = string
  default     = "flight-counter"

  validation {
    condition     = can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must be 1-100 characters of letters, digits, hyphens and underscores, starting with a letter or digit."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and node groups; keep it in standard support and in step with the version the manifests are validated against (.ci/infra/versions.env)."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.35."
  }
}

variable "availability_zones" {
  description = "The three availability zones of aws_region that hold the subnets, NAT gateways and nodes. Listed explicitly so the subnets never move when the region gains zones."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]

  validation {
    condition     = length(var.availability_zones) == 3 && length(distinct(var.availability_zones)) == 3 && alltrue([for z in var.availability_zones : startswith(z, var.aws_region)])
    error_message = "availability_zones must list three distinct zones of aws_region."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC; split into three private /20 and three public /24 subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 18
    error_message = "vpc_cidr must be a valid IPv4 CIDR of size /18 or larger."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all three AZs (cheaper, but egress fails when that AZ does) instead of one per AZ."
  type        = bool
  default     = false
}

variable "enable_flow_log" {
  description = "Send VPC flow logs to CloudWatch Logs."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the control-plane and VPC flow log groups."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (requests still need IAM authentication): the machines that run Terraform and kubectl, and the CI runners that deploy (see docs/deploy-aws.md). Required: this root installs the namespace and Helm charts through the API, so the default, empty, stops the plan with a message saying what to set."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "endpoint_public_access_cidrs must be a list of valid CIDRs."
  }

  validation {
    condition     = length(var.endpoint_public_access_cidrs) > 0
    error_message = "endpoint_public_access_cidrs is empty, which would close the public Kubernetes API endpoint; this root installs the namespace and the Helm charts through that endpoint, so the apply would fail half-way. Set the default of endpoint_public_access_cidrs in eks-cluster/variables.tf to the ranges of the machines that run Terraform and kubectl (your address: curl -s https://checkip.amazonaws.com, plus /32) and of the CI runners that deploy, and commit it (docs/deploy-aws.md, step 1)."
  }
}

variable "cluster_admin_role_trusted_arns" {
  description = "IAM roles and users (ARNs) that may assume the cluster-admin role this root creates: the people and machines that run Terraform (its Kubernetes and Helm providers act as that role) and the operators. Also the administrators of the cluster's secrets-encryption KMS key. Required: the default, empty, stops the plan with a message saying what to set. Each must exist when the role is created (IAM refuses unknown principals)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_role_trusted_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", a))])
    error_message = "cluster_admin_role_trusted_arns must contain IAM role or user ARNs (arn:aws:iam::<account>:role/<name>); not an account root, a wildcard or an assumed-role session."
  }

  validation {
    condition     = length(var.cluster_admin_role_trusted_arns) > 0
    error_message = "cluster_admin_role_trusted_arns is empty, so nobody could assume the cluster-admin role, and this root's Kubernetes and Helm providers act as it. Set its default in eks-cluster/variables.tf to the ARNs of the IAM roles or users that run Terraform and operate the cluster (for SSO users, the role of their permission set: aws sts get-caller-identity shows it), and commit it (docs/deploy-aws.md, step 1)."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group, in order of preference."
  type        = list(string)
  default     = ["t3.medium"]

  validation {
    condition     = length(var.node_instance_types) > 0
    error_message = "node_instance_types must list at least one instance type."
  }
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_count" {
  description = "Nodes of the fixed managed node group, which runs the cluster's controllers (Karpenter among them) and the first pods; 3 keeps one in each AZ. Capacity past it comes from Karpenter (karpenter_cpu_limit)."
  type        = number
  default     = 3

  validation {
    condition     = var.node_count >= 2 && var.node_count <= 10
    error_message = "node_count must be between 2 and 10 (Karpenter runs two replicas here)."
  }
}

variable "node_ami_release_version" {
  description = "AMI release version of the fixed node group (e.g. 1.35.0-20260115; aws ssm get-parameter --name /aws/service/eks/optimized-ami/<kubernetes_version>/amazon-linux-2023/x86_64/standard/recommended/release_version). Null keeps the release the group was made with: a re-apply never rolls the nodes by itself. Set it to patch the nodes (one at a time)."
  type        = string
  default     = null

  validation {
    condition     = var.node_ami_release_version == null || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+-[0-9]{8}$", var.node_ami_release_version))
    error_message = "node_ami_release_version must be null or an EKS AMI release version such as 1.35.0-20260115."
  }
}

variable "addon_versions" {
  description = "Versions of the EKS add-ons (vpc-cni, coredns, kube-proxy, eks-pod-identity-agent, metrics-server), by add-on name. An add-on left out gets the newest version AWS publishes for kubernetes_version, read at plan time: a re-apply after AWS publishes a new one updates that add-on. Pin them to the output addon_versions after the first apply to stop that."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, version in var.addon_versions : contains(["vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "metrics-server"], name) && can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+-eksbuild\\.[0-9]+$", version))])
    error_message = "addon_versions maps vpc-cni, coredns, kube-proxy, eks-pod-identity-agent or metrics-server to a version such as v1.20.4-eksbuild.1."
  }
}

variable "node_disk_size_gb" {
  description = "Size of each node's encrypted gp3 root volume."
  type        = number
  default     = 40

  validation {
    condition     = var.node_disk_size_gb >= 20 && var.node_disk_size_gb <= 1000
    error_message = "node_disk_size_gb must be between 20 and 1000."
  }
}

variable "table_name" {
  description = "Name of the counts table made by the dynamodb root (its table_name); looked up by name, and the service's pods may use it and nothing else."
  type        = string
  default     = "flight-transactions"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.table_name))
    error_message = "table_name must be 3-255 characters of letters, digits, underscore, hyphen and dot."
  }
}

variable "service_namespace" {
  description = "Namespace of the service, made by this root; must match namespace: in kubernetes/base/kustomization.yaml."
  type        = string
  default     = "flight-counter"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.service_namespace))
    error_message = "service_namespace must be a valid Kubernetes namespace name."
  }
}

variable "service_account_name" {
  description = "ServiceAccount of the service's pods; must match kubernetes/base/serviceaccount.yaml."
  type        = string
  default     = "flight-counter"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.service_account_name))
    error_message = "service_account_name must be a valid Kubernetes object name."
  }
}

variable "admin_principal_arns" {
  description = "IAM role or user ARNs granted cluster-admin through access entries of their own, besides the cluster-admin role this root creates (output cluster_admin_role_arn), which the principals in cluster_admin_role_trusted_arns assume."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]+:(role|user)/.+$", a))])
    error_message = "admin_principal_arns must contain IAM role or user ARNs."
  }
}

variable "deployer_role_names" {
  description = "Names of IAM roles (the GitHub Actions role of the ecr-repo root, <repository_name>-github-deploy) that may apply the service's manifests in its namespace only, without access to Secrets (the deployer Role in access.tf). Looked up by name; a role that does not exist yet gets no access entry until the next apply after it is created."
  type        = list(string)
  default     = ["flight-counter-github-deploy"]

  validation {
    condition     = alltrue([for n in var.deployer_role_names : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", n))])
    error_message = "deployer_role_names must contain IAM role names."
  }
}

variable "karpenter_chart_version" {
  description = "Version of the Karpenter Helm chart (oci://public.ecr.aws/karpenter/karpenter); it must support kubernetes_version."
  type        = string
  default     = "1.11.1"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.karpenter_chart_version))
    error_message = "karpenter_chart_version must be a version such as 1.11.1."
  }
}

variable "karpenter_cpu_limit" {
  description = "Most vCPUs that Karpenter may launch in all (on top of the fixed node group); the ceiling on what scaling can cost."
  type        = number
  default     = 32

  validation {
    condition     = var.karpenter_cpu_limit >= 2 && var.karpenter_cpu_limit <= 1000
    error_message = "karpenter_cpu_limit must be between 2 and 1000."
  }
}

variable "karpenter_capacity_types" {
  description = "Capacity types Karpenter may launch: on-demand, spot, or both (spot first when cheaper; interruptions arrive through the SQS queue and pods move before the node goes)."
  type        = list(string)
  default     = ["on-demand"]

  validation {
    condition     = length(var.karpenter_capacity_types) > 0 && alltrue([for c in var.karpenter_capacity_types : contains(["on-demand", "spot"], c)])
    error_message = "karpenter_capacity_types must list on-demand and/or spot."
  }
}

variable "lb_controller_chart_version" {
  description = "Version of the AWS Load Balancer Controller Helm chart (https://aws.github.io/eks-charts)."
  type        = string
  default     = "1.17.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.lb_controller_chart_version))
    error_message = "lb_controller_chart_version must be a version such as 1.17.0."
  }
}

variable "tags" {
  description = "Extra tags added to every resource through the provider's default tags."
  type        = map(string)
  default     = {}
}
