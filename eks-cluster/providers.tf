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
