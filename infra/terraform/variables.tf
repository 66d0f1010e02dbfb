variable "project" {
  description = "Name prefix of every resource (lowercase letters, digits and hyphens)."
  type        = string
  default     = "srl-rlvr"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,30}$", var.project))
    error_message = "project must be 2-31 lowercase letters, digits or hyphens."
  }
}

variable "environment" {
  description = "Deployment stage, part of every name (dev, staging, prod)."
  type        = string
  default     = "dev"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "training_principals" {
  description = "IAM principals (ARNs) allowed to assume the training role, e.g. the SageMaker or EC2 role of the trainers. Empty: the account root, to be narrowed by the account's own policies."
  type        = list(string)
  default     = []
}

variable "serving_principals" {
  description = "IAM principals allowed to assume the serving role."
  type        = list(string)
  default     = []
}

variable "ci_principals" {
  description = "IAM principals allowed to assume the CI (plan-only) role, e.g. a GitHub OIDC role."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days the S3 access logs are kept."
  type        = number
  default     = 365
}

variable "noncurrent_version_days" {
  description = "Days a replaced (noncurrent) object version is kept before expiry."
  type        = number
  default     = 90
}

variable "checkpoint_expiry_days" {
  description = "Days after which checkpoint objects expire (checkpoints are rotated by srl-rlvr; this is the backstop)."
  type        = number
  default     = 180
}

variable "metrics_namespace" {
  description = "CloudWatch namespace srl-rlvr publishes to (srl-rlvr monitor publish --namespace)."
  type        = string
  default     = "SrlRlvr"
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified when an alarm fires."
  type        = list(string)
  default     = []
}

variable "tiers" {
  description = "Training tiers (src/srl_rlvr/tiers/*.yaml): gold = one GPU, silver = one node, bronze = several nodes (accelerate + DeepSpeed + trl vllm-serve)."
  type = map(object({
    instance_type  = string
    instance_count = number
    gpus_per_node  = number
  }))
  default = {
    gold   = { instance_type = "ml.g5.2xlarge", instance_count = 1, gpus_per_node = 1 }
    silver = { instance_type = "ml.g5.12xlarge", instance_count = 1, gpus_per_node = 4 }
    bronze = { instance_type = "ml.p4d.24xlarge", instance_count = 2, gpus_per_node = 8 }
  }
  validation {
    condition     = alltrue([for name in keys(var.tiers) : contains(["gold", "silver", "bronze"], name)])
    error_message = "tiers are gold, silver and bronze."
  }
  validation {
    condition     = alltrue([for t in values(var.tiers) : t.instance_count >= 1 && t.gpus_per_node >= 1])
    error_message = "every tier needs instance_count >= 1 and gpus_per_node >= 1."
  }
}

locals {
  prefix     = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  tags = {
    project     = var.project
    environment = var.environment
    managed_by  = "terraform"
  }
}
