# A root that exists only to test the docs generators' escape rule
# (.ci/check-infra.sh): README.md here is what terraform-docs writes with
# the project's .terraform-docs.yml (escape: true).

variable "table_name" {
  description = "Sets FLIGHT_COUNTER_TABLE (see `snake_case_in_code`, https://example.com/a_b/c_d and an _emphasised_ word) | piped."
  type        = string
  default     = "flight_transactions"
}

variable "max_size" {
  description = "_leading underscore then node_max_size"
  type        = number
  default     = 3
}
