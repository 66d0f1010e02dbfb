# Three roles, each with only the actions it needs, on the ARNs it needs (iam_behaviour test in
# tests/infra/test_iam_behaviour.py loads these documents into a moto server and tries them):
#   training: read the training data; read and write checkpoints and outputs; register model versions
#   serving:  read outputs; read the registry
#   ci:       plan only: read the configuration of these resources, never their data
locals {
  # srl-rlvr's SageMaker registry (registry --registry sagemaker://<prefix>) keeps model N in the group
  # <prefix>-N and its settings in one more group under the same prefix; the roles get exactly that prefix.
  registry_groups_arn   = "arn:${local.partition}:sagemaker:${var.region}:${local.account_id}:model-package-group/${local.prefix}-*"
  registry_packages_arn = "arn:${local.partition}:sagemaker:${var.region}:${local.account_id}:model-package/${local.prefix}-*/*"
  trusted = {
    training = length(var.training_principals) > 0 ? var.training_principals : ["arn:${local.partition}:iam::${local.account_id}:root"]
    serving  = length(var.serving_principals) > 0 ? var.serving_principals : ["arn:${local.partition}:iam::${local.account_id}:root"]
    ci       = length(var.ci_principals) > 0 ? var.ci_principals : ["arn:${local.partition}:iam::${local.account_id}:root"]
  }
}

data "aws_iam_policy_document" "assume" {
  for_each = local.trusted
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = each.value
    }
  }
}

# --- training ------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "training" {
  statement {
    sid       = "ListBuckets"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data["training_data"].arn, aws_s3_bucket.data["checkpoints"].arn, aws_s3_bucket.data["outputs"].arn]
  }
  statement {
    sid       = "ReadTrainingData"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data["training_data"].arn}/*"]
  }
  statement {
    sid       = "ReadWriteCheckpointsAndOutputs"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.data["checkpoints"].arn}/*", "${aws_s3_bucket.data["outputs"].arn}/*"]
  }
  statement {
    sid       = "UseTheDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "RegisterModelVersions"
    actions   = ["sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages", "sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"]
    resources = [local.registry_groups_arn, local.registry_packages_arn]
  }
  statement {
    sid       = "ListRegistryGroups"
    actions   = ["sagemaker:ListModelPackageGroups"]
    resources = ["*"] # ListModelPackageGroups has no resource ARN; the registry filters by its prefix
  }
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource ARN; the condition pins the namespace
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

# --- serving -------------------------------------------------------------------------------------------
data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "ListOutputs"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data["outputs"].arn]
  }
  statement {
    sid       = "ReadOutputs"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data["outputs"].arn}/*"]
  }
  statement {
    sid       = "DecryptOutputs"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "ReadTheRegistry"
    actions   = ["sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages", "sagemaker:ListTags"]
    resources = [local.registry_groups_arn, local.registry_packages_arn]
  }
  statement {
    sid       = "ListRegistryGroups"
    actions   = ["sagemaker:ListModelPackageGroups"]
    resources = ["*"] # ListModelPackageGroups has no resource ARN; the registry filters by its prefix
  }
  statement {
    sid       = "PublishMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # see the training role
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

# --- CI: terraform plan ----------------------------------------------------------------------------------
data "aws_iam_policy_document" "ci" {
  statement {
    sid = "ReadBucketConfiguration"
    actions = ["s3:GetBucketLocation", "s3:GetBucketPolicy", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration",
      "s3:GetBucketPublicAccessBlock", "s3:GetBucketOwnershipControls", "s3:GetLifecycleConfiguration",
    "s3:GetBucketLogging", "s3:GetBucketNotification", "s3:GetBucketTagging", "s3:GetBucketAcl", "s3:GetBucketCORS", "s3:GetBucketWebsite", "s3:GetAccelerateConfiguration", "s3:GetBucketRequestPayment", "s3:GetReplicationConfiguration", "s3:GetBucketObjectLockConfiguration"]
    resources = [for b in aws_s3_bucket.data : b.arn]
  }
  statement {
    sid       = "ReadLogBucketConfiguration"
    actions   = ["s3:GetBucketPolicy", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration"]
    resources = [aws_s3_bucket.access_logs.arn]
  }
  statement {
    sid       = "ReadKeyConfiguration"
    actions   = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "ReadRoleConfiguration"
    actions   = ["iam:GetRole", "iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/${local.prefix}-*"]
  }
  statement {
    sid       = "ReadRegistryConfiguration"
    actions   = ["sagemaker:DescribeModelPackageGroup", "sagemaker:ListTags"]
    resources = [aws_sagemaker_model_package_group.registry.arn]
  }
  statement {
    sid       = "ReadAlarmsAndDashboard"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource", "cloudwatch:GetDashboard"]
    resources = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:SrlRlvr-*", "arn:${local.partition}:cloudwatch::${local.account_id}:dashboard/${local.prefix}"]
  }
}

locals {
  roles = toset(["training", "serving", "ci"])
}

resource "aws_iam_role" "this" {
  for_each             = local.roles
  name                 = "${local.prefix}-${each.key}"
  assume_role_policy   = data.aws_iam_policy_document.assume[each.key].json
  max_session_duration = 3600
}

# One inline policy per role. checkov checks the documents themselves (CKV_AWS_109/111/356 on
# aws_iam_policy_document; CKV_AWS_355 only reads inline JSON, so it does not run here).
resource "aws_iam_role_policy" "training" {
  name   = "${local.prefix}-training"
  role   = aws_iam_role.this["training"].id
  policy = data.aws_iam_policy_document.training.json
}

resource "aws_iam_role_policy" "serving" {
  name   = "${local.prefix}-serving"
  role   = aws_iam_role.this["serving"].id
  policy = data.aws_iam_policy_document.serving.json
}

resource "aws_iam_role_policy" "ci" {
  name   = "${local.prefix}-ci"
  role   = aws_iam_role.this["ci"].id
  policy = data.aws_iam_policy_document.ci.json
}
