# Observability of the running service from the AWS side (see docs/operations.md):
#   - container logs shipped to CloudWatch Logs by the amazon-cloudwatch-observability add-on
#     (Fluent Bit and the CloudWatch agent), into log groups created here with a retention;
#   - an alarm on the load balancer's unhealthy targets, once its ARN suffixes are known (the
#     NLB is created by Kubernetes from the Service, after this root).

# --- Variables ------------------------------------------------------------------------------

variable "alarm_sns_topic_arn" {
  description = "SNS topic the CloudWatch alarms of this root notify (on alarm and on recovery). Null: the alarms only change state."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be null or an SNS topic ARN."
  }
}

variable "nlb_arn_suffix" {
  description = "ARN suffix of the service's Network Load Balancer (net/<name>/<id>, the part after loadbalancer/), created by Kubernetes from the Service. Null: no load balancer alarm."
  type        = string
  default     = null

  validation {
    condition     = var.nlb_arn_suffix == null || can(regex("^net/[A-Za-z0-9-]+/[0-9a-f]+$", var.nlb_arn_suffix))
    error_message = "nlb_arn_suffix must be null or net/<name>/<id>."
  }
}

variable "nlb_target_group_arn_suffix" {
  description = "ARN suffix of the NLB's target group (targetgroup/<name>/<id>). Needed with nlb_arn_suffix for the UnHealthyHostCount alarm."
  type        = string
  default     = null

  validation {
    condition     = var.nlb_target_group_arn_suffix == null || can(regex("^targetgroup/[A-Za-z0-9-]+/[0-9a-f]+$", var.nlb_target_group_arn_suffix))
    error_message = "nlb_target_group_arn_suffix must be null or targetgroup/<name>/<id>."
  }
}

variable "container_logs_enabled" {
  description = "Install the amazon-cloudwatch-observability add-on, which ships every container's logs (the service's JSON request lines included) to CloudWatch Logs, and create its log groups."
  type        = bool
  default     = true
}

variable "container_log_retention_days" {
  description = "Days CloudWatch Logs keeps the shipped container logs (the /aws/containerinsights/<cluster>/* log groups)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.container_log_retention_days)
    error_message = "container_log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

# --- Container logs -------------------------------------------------------------------------

locals {
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  # The groups the add-on writes to; created here first so that they expire.
  container_log_groups = var.container_logs_enabled ? toset(["application", "dataplane", "host", "performance"]) : toset([])
}

resource "aws_cloudwatch_log_group" "container_logs" {
  # checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs with its service key; a customer managed key would need a key policy for the logs service
  # checkov:skip=CKV_AWS_338:Retention is container_log_retention_days (30 days by default for request logs); raise it where a year is required
  for_each = local.container_log_groups

  name              = "/aws/containerinsights/${module.eks.cluster_name}/${each.key}"
  retention_in_days = var.container_log_retention_days
}

# The add-on's CloudWatch agent and Fluent Bit run in the amazon-cloudwatch
# namespace as the cloudwatch-agent ServiceAccount (the association below).
locals {
  cloudwatch_agent_namespace       = "amazon-cloudwatch"
  cloudwatch_agent_service_account = "cloudwatch-agent"
}

# Like the service's own role (main.tf): only the add-on's ServiceAccount on
# this cluster may assume it, never another Pod Identity association of the
# account. EKS Pod Identity sets these session tags when it assumes the role.
data "aws_iam_policy_document" "cloudwatch_agent_trust" {
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
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [local.cloudwatch_agent_namespace]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [local.cloudwatch_agent_service_account]
    }
  }
}

resource "aws_iam_role" "cloudwatch_agent" {
  count = var.container_logs_enabled ? 1 : 0

  name_prefix        = "${var.cluster_name}-cw-agent-"
  description        = "CloudWatch agent and Fluent Bit of the amazon-cloudwatch-observability add-on (EKS Pod Identity)"
  assume_role_policy = data.aws_iam_policy_document.cloudwatch_agent_trust.json
}

resource "aws_iam_role_policy_attachment" "cloudwatch_agent" {
  count = var.container_logs_enabled ? 1 : 0

  role       = aws_iam_role.cloudwatch_agent[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/CloudWatchAgentServerPolicy"
}

resource "aws_eks_addon" "cloudwatch_observability" {
  count = var.container_logs_enabled ? 1 : 0

  cluster_name = module.eks.cluster_name
  addon_name   = "amazon-cloudwatch-observability"
  configuration_values = jsonencode({
    containerLogs = { enabled = true }
  })

  # The add-on's agent and Fluent Bit run as this service account in amazon-cloudwatch.
  pod_identity_association {
    role_arn        = aws_iam_role.cloudwatch_agent[0].arn
    service_account = local.cloudwatch_agent_service_account
  }

  # After the managed node group (inside module.eks): with no node to run on,
  # the add-on's pods stay pending and the add-on sits DEGRADED until the
  # create times out (20 minutes).
  depends_on = [
    module.eks,
    aws_cloudwatch_log_group.container_logs,
    aws_iam_role_policy_attachment.cloudwatch_agent,
  ]
}

# --- Load balancer --------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "nlb_unhealthy_hosts" {
  count = var.nlb_arn_suffix != null && var.nlb_target_group_arn_suffix != null ? 1 : 0

  alarm_name          = "${var.cluster_name}-flight-counter-nlb-unhealthy-hosts"
  alarm_description   = "Targets of the flight-counter NLB failing its /readyz health check. Runbook: docs/operations.md#alert-readiness-flapping"
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  dimensions = {
    LoadBalancer = var.nlb_arn_suffix
    TargetGroup  = var.nlb_target_group_arn_suffix
  }
}

output "container_log_groups" {
  description = "CloudWatch log groups that receive the cluster's container logs (empty when container_logs_enabled is false)."
  value       = [for g in aws_cloudwatch_log_group.container_logs : g.name]
}
