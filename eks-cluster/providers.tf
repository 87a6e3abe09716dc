provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, {
      Project   = "flight-counter"
      Component = "eks-cluster"
      ManagedBy = "terraform"
    })
  }
}

# The Kubernetes and Helm providers act as the cluster-admin role (access.tf),
# which whoever runs Terraform assumes: cluster access never depends on who
# created the cluster. Needs the AWS CLI where Terraform runs.
locals {
  kubernetes_exec_args = [
    "eks", "get-token",
    "--cluster-name", module.eks.cluster_name,
    "--region", var.aws_region,
    "--role-arn", aws_iam_role.cluster_admin.arn,
  ]
}

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = local.kubernetes_exec_args
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)

    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = local.kubernetes_exec_args
    }
  }
}
