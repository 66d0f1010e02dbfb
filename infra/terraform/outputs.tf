output "buckets" {
  description = "Bucket names: training_data, checkpoints, outputs, access_logs."
  value       = merge({ for k, b in aws_s3_bucket.data : k => b.bucket }, { access_logs = aws_s3_bucket.access_logs.bucket })
}

output "checkpoints_remote" {
  description = "The value of checkpoints.remote in a pipeline config."
  value       = "s3://${aws_s3_bucket.data["checkpoints"].bucket}/${var.environment}"
}

output "role_arns" {
  description = "Role ARNs: training, serving, ci."
  value       = { for k, r in aws_iam_role.this : k => r.arn }
}

output "kms_key_arn" {
  description = "The data key (SSE-KMS of the three data buckets)."
  value       = aws_kms_key.data.arn
}

output "model_package_group" {
  description = "The registry's model package group (srl-rlvr registry --registry sagemaker://<this>)."
  value       = aws_sagemaker_model_package_group.registry.model_package_group_name
}

output "tiers" {
  description = "The tier sizes, for the launchers in infra/launch/."
  value       = var.tiers
}

output "metrics_namespace" {
  description = "srl-rlvr monitor publish --namespace."
  value       = var.metrics_namespace
}
