"""Member logits for named evaluation sets and the metrics.json results made from them."""
