"""SRL and RLVR trainers on TRL's GRPOTrainer, the SFT baseline, and the stage runners."""
