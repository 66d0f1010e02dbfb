# The model registry: srl-rlvr's SageMaker backend (src/srl_rlvr/registry/sagemaker.py) with
# --registry sagemaker://<project>-<environment> registers the versions of model "models" in this group
# (another model name N gets the group <prefix>-N, created on first use; the roles allow that prefix).
resource "aws_sagemaker_model_package_group" "registry" {
  model_package_group_name        = "${local.prefix}-models"
  model_package_group_description = "srl-rlvr model versions (srl-rlvr registry --registry sagemaker://...)"
}
