# The mistake: 1.10 is admitted, where S3 lock files (use_lockfile) are still
# experimental.
terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.28"
    }
  }
}
