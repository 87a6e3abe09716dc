variable "aws_region" {
  description = "AWS region that holds the state bucket."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as us-east-1."
  }
}

variable "bucket_prefix" {
  description = "Start of the state bucket name; the account ID and region are appended so the name is unique without being hard-coded."
  type        = string
  default     = "flight-counter-tfstate"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{2,35}$", var.bucket_prefix))
    error_message = "bucket_prefix must be 3-36 characters of lowercase letters, digits and hyphens, starting with a letter or digit."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which superseded state versions are deleted."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 7 && var.noncurrent_version_expiration_days <= 3650
    error_message = "noncurrent_version_expiration_days must be between 7 and 3650."
  }
}

variable "noncurrent_versions_to_keep" {
  description = "Number of most recent superseded versions of each state object kept regardless of age."
  type        = number
  default     = 10

  validation {
    condition     = var.noncurrent_versions_to_keep >= 1 && var.noncurrent_versions_to_keep <= 100
    error_message = "noncurrent_versions_to_keep must be between 1 and 100."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the state encryption key is deleted once scheduled for deletion."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Extra tags added to every resource through the provider's default tags."
  type        = map(string)
  default     = {}
}
