# Each mistake the review of eks-cluster found, in a few lines; the checks
# must refuse every one (EXPECT one directory up lists the messages).

variable "endpoint_public_access_cidrs" {
  description = "Without a length > 0 validation: [] closes the API endpoint and the apply fails half-way."
  type        = list(string)
  default     = []
}

variable "deployer_role_arns" {
  description = "A list: map keys made from its positions move when one is removed."
  type        = list(string)
  default     = []
}

data "aws_caller_identity" "current" {}

data "aws_ecrpublic_authorization_token" "token" {}

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.19"

  name = "fixture"

  # No enable_irsa = false, no kms_key_administrators, and the node group
  # follows the newest AMI.
  eks_managed_node_groups = {
    default = {
      ami_type = "AL2023_x86_64_STANDARD"
    }
  }

  access_entries = { for i, arn in var.deployer_role_arns : "deployer-${i}" => { principal_arn = arn } }
}

resource "helm_release" "karpenter" {
  name                = "karpenter"
  repository          = "oci://public.ecr.aws/karpenter"
  repository_username = data.aws_ecrpublic_authorization_token.token.user_name
  repository_password = data.aws_ecrpublic_authorization_token.token.password
  chart               = "karpenter"
  version             = "1.11.1"

  values = [yamlencode({
    webhook = { enabled = false }
    note    = timestamp()
  })]
}

resource "aws_eks_addon" "cloudwatch_observability" {
  cluster_name = module.eks.cluster_name
  addon_name   = "amazon-cloudwatch-observability"
}

data "aws_iam_policy_document" "agent_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "cluster_admin_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

data "aws_iam_policy_document" "service_dynamodb" {
  statement {
    actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = ["*"]
  }
}
