output "state_bucket_name" {
  description = "Name of the S3 bucket holding Terraform state; written into backend.hcl by the backend_config output"
  value       = aws_s3_bucket.state.id
}

output "state_bucket_arn" {
  description = "ARN of the state bucket, for IAM policies of whoever runs Terraform."
  value       = aws_s3_bucket.state.arn
}

output "state_bucket_region" {
  description = "Region of the state bucket (also in backend_config)."
  value       = var.aws_region
}

output "state_kms_key_arn" {
  description = "ARN of the KMS key that encrypts state objects; Terraform runners need kms:Encrypt, kms:Decrypt and kms:GenerateDataKey on it."
  value       = aws_kms_key.state.arn
}

output "state_kms_key_alias" {
  description = "Alias of the state KMS key, as every backend block names it (kms_key_id)."
  value       = aws_kms_alias.state.name
}

output "backend_config" {
  description = "Contents for the backend.hcl file (git-ignored) that every root reads with terraform init -backend-config=../backend.hcl."
  value       = <<-EOT
    bucket = "${aws_s3_bucket.state.id}"
    region = "${var.aws_region}"
  EOT
}
