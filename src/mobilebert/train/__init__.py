"""Training machinery shared by teacher pre-training, distillation and fine-tuning."""
