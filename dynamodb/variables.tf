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

variable "alarm_sns_topic_arn" {
  description = "SNS topic the table's CloudWatch alarms notify (on alarm and on recovery). Null: the alarms only change state."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be null or an SNS topic ARN."
  }
}

variable "throttled_requests_alarm_threshold" {
  description = "Throttled requests on the table (all operations the service calls) in 5 minutes above which the alarm fires. The service paces throttled routes, so a few are expected under load."
  type        = number
  default     = 100

  validation {
    condition     = var.throttled_requests_alarm_threshold >= 0
    error_message = "throttled_requests_alarm_threshold must be zero or more."
  }
}

variable "user_errors_alarm_threshold" {
  description = "DynamoDB UserErrors (HTTP 400s: validation, access denied, missing table) in the region in 5 minutes above which the alarm fires. The metric is per account and region, not per table."
  type        = number
  default     = 10

  validation {
    condition     = var.user_errors_alarm_threshold >= 0
    error_message = "user_errors_alarm_threshold must be zero or more."
  }
}

variable "write_units_alarm_per_second" {
  description = "Write units consumed per second by the whole table above which the hot-item alarm fires; one item (route) takes about 1,000 a second, and the table's total bounds its hottest item."
  type        = number
  default     = 800

  validation {
    condition     = var.write_units_alarm_per_second > 0
    error_message = "write_units_alarm_per_second must be greater than zero."
  }
}

variable "contributor_insights" {
  description = "Turn on CloudWatch Contributor Insights for the table: the most accessed and most throttled keys (routes). Billed per event."
  type        = bool
  default     = false
}
