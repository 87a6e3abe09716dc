variable "aws_region" {
  description = "AWS region of the table; the service must run in the same region."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as us-east-1."
  }
}

variable "table_name" {
  description = "Name of the counts table; must match FLIGHT_COUNTER_TABLE in the service's ConfigMap."
  type        = string
  default     = "flight-transactions"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.table_name))
    error_message = "table_name must be 3-255 characters of letters, digits, underscore, hyphen and dot."
  }
}

variable "deletion_protection" {
  description = "Refuse DeleteTable while true; set to false and apply before tearing the table down."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for encryption at rest. Null uses the AWS managed key (aws/dynamodb), which needs no extra permissions for the service."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]+:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN."
  }
}

variable "tags" {
  description = "Extra tags added to every resource through the provider's default tags."
  type        = map(string)
  default     = {}
}
