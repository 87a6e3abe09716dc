output "table_name" {
  description = "Name of the counts table, for FLIGHT_COUNTER_TABLE in the configMapGenerator of kubernetes/base/kustomization.yaml; the eks-cluster root looks the table up by this name (its table_name)."
  value       = aws_dynamodb_table.counts.name
}

output "table_arn" {
  description = "ARN of the counts table (the eks-cluster root finds it by name; nothing needs to pass it on)."
  value       = aws_dynamodb_table.counts.arn
}

output "alarm_arns" {
  description = "ARNs of the table's CloudWatch alarms, by name."
  value = {
    for alarm in concat(values(aws_cloudwatch_metric_alarm.per_operation), [
      aws_cloudwatch_metric_alarm.user_errors,
      aws_cloudwatch_metric_alarm.hot_item_write_units,
    ]) : alarm.alarm_name => alarm.arn
  }
}
