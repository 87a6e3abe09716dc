# The table layout is fixed by the service (app/src): one item per route,
# keyed by the partition key "route" (String), holding the counter in the
# Number attribute "transactions". Idempotency records live in the same table
# under a key prefix that no route can take, and expire through the TTL
# attribute "expires_at" (epoch seconds). Non-key attributes are not declared
# here because DynamoDB is schemaless beyond the key.
resource "aws_dynamodb_table" "counts" {
  # checkov:skip=CKV_AWS_119:Encrypted with the AWS managed key by default so the pods need no KMS grants; set kms_key_arn for a customer managed key

  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "route"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "route"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  lifecycle {
    prevent_destroy = true
  }
}
