# CloudWatch alarms on the counts table: what the service's own metrics cannot see from the
# outside (see docs/operations.md, "CloudWatch alarms").

locals {
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
  # DynamoDB publishes ThrottledRequests and SystemErrors per operation; the alarms add up the
  # operations the service calls (a missing one counts as 0).
  table_operations = ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"]
}

# Per-operation metrics added up over the operations the service calls: throttling (pacing
# should keep it rare) and DynamoDB's own 500s.
locals {
  per_operation_alarms = {
    throttled-requests = {
      metric      = "ThrottledRequests"
      label       = "Throttled requests"
      description = "DynamoDB throttled requests on ${var.table_name} (all operations). Runbook: docs/operations.md#alert-dynamodb-throttling"
      evaluations = 3
      datapoints  = 2
      threshold   = var.throttled_requests_alarm_threshold
    }
    system-errors = {
      metric      = "SystemErrors"
      label       = "System errors"
      description = "DynamoDB answered HTTP 500 on ${var.table_name}: a DynamoDB-side fault. Runbook: docs/operations.md#alert-dynamodb-errors"
      evaluations = 2
      datapoints  = 2
      threshold   = 0
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "per_operation" {
  for_each = local.per_operation_alarms

  alarm_name          = "${var.table_name}-${each.key}"
  alarm_description   = each.value.description
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = each.value.evaluations
  datapoints_to_alarm = each.value.datapoints
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "total"
    expression  = join(" + ", [for i, _ in local.table_operations : "FILL(m${i}, 0)"])
    label       = each.value.label
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.table_operations
    content {
      id = "m${metric_query.key}"
      metric {
        namespace   = "AWS/DynamoDB"
        metric_name = each.value.metric
        period      = 300
        stat        = "Sum"
        dimensions = {
          TableName = aws_dynamodb_table.counts.name
          Operation = metric_query.value
        }
      }
    }
  }
}

# UserErrors has no table dimension: it counts every table's 400s in the account and region.
resource "aws_cloudwatch_metric_alarm" "user_errors" {
  alarm_name          = "${var.table_name}-dynamodb-user-errors"
  alarm_description   = "DynamoDB HTTP 400s in ${var.aws_region} (every table of the account): validation errors, access denied, missing table. Runbook: docs/operations.md#alert-dynamodb-errors"
  namespace           = "AWS/DynamoDB"
  metric_name         = "UserErrors"
  statistic           = "Sum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = var.user_errors_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A single item takes about 1,000 write units a second. No metric is per item, but the table's
# total bounds its hottest item: above the threshold, a hot route may be near its limit.
resource "aws_cloudwatch_metric_alarm" "hot_item_write_units" {
  alarm_name          = "${var.table_name}-write-units-near-item-limit"
  alarm_description   = "Write units consumed per second on ${var.table_name} above ${var.write_units_alarm_per_second}: a hot route may be near the 1,000 a single item takes. Runbook: docs/operations.md#alert-dynamodb-throttling"
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.write_units_alarm_per_second
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "per_second"
    expression  = "wcu / 60"
    label       = "Write units per second"
    return_data = true
  }

  metric_query {
    id = "wcu"
    metric {
      namespace   = "AWS/DynamoDB"
      metric_name = "ConsumedWriteCapacityUnits"
      period      = 60
      stat        = "Sum"
      dimensions = {
        TableName = aws_dynamodb_table.counts.name
      }
    }
  }
}

resource "aws_dynamodb_contributor_insights" "counts" {
  count      = var.contributor_insights ? 1 : 0
  table_name = aws_dynamodb_table.counts.name
}
