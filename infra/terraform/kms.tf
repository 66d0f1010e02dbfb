# One customer-managed key for the three data buckets (SSE-KMS), rotated yearly by AWS.
resource "aws_kms_key" "data" {
  description             = "${local.prefix}: training data, checkpoints and outputs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Key policies name the key as "*". The account keeps administering it; use is granted by the
        # roles' IAM policies (iam.tf), which name this key's ARN.
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
    ]
  })
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
