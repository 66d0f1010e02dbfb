# AWS resources for srl-rlvr: encrypted buckets, least-privilege roles, the model registry, alarms and a
# dashboard. Plain aws_* resources only (no registry modules): see README.md.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
