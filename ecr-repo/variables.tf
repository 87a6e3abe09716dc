variable "aws_region" {
  description = "AWS region of the repository; the cluster pulls from the same region."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as us-east-1."
  }
}

variable "repository_name" {
  description = "Name of the ECR repository for the service image."
  type        = string
  default     = "flight-counter"

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$", var.repository_name)) && length(var.repository_name) <= 256
    error_message = "repository_name must be a valid ECR repository name (lowercase, digits, '.', '_', '-', '/')."
  }
}

variable "releases_to_keep" {
  description = "Number of most recent tagged images kept; older tagged images are expired."
  type        = number
  default     = 30

  validation {
    condition     = var.releases_to_keep >= 1 && var.releases_to_keep <= 1000
    error_message = "releases_to_keep must be between 1 and 1000."
  }
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images (superseded layers, failed pushes) are expired."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_expiry_days >= 1
    error_message = "untagged_expiry_days must be at least 1."
  }
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose main-branch workflow may push images and roll the deployment. Empty disables the CI role."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be empty or of the form owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the IAM OIDC provider for GitHub Actions. Set to false when the account already has one (only one per account is allowed)."
  type        = bool
  default     = true
}

variable "cluster_name" {
  description = "Name of the EKS cluster the CI role may describe (for aws eks update-kubeconfig); must match the eks-cluster root."
  type        = string
  default     = "flight-counter"

  validation {
    condition     = can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.cluster_name))
    error_message = "cluster_name must be 1-100 characters of letters, digits, hyphens and underscores, starting with a letter or digit."
  }
}

variable "tags" {
  description = "Extra tags added to every resource through the provider's default tags."
  type        = map(string)
  default     = {}
}
