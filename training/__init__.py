"""pDPO training (paper section 3) of a LoRA adapter on the store's pDPO export, QLoRA-style.

    python -m training.pdpo --pairs pairs.jsonl --checkpoint CKPT --out ADAPTER_DIR

Modules: ``config`` (settings), ``data`` (export records -> token ids), ``features`` (AV blocks
cached per clip), ``packing`` (a clip's pairs as one tree in one pass), ``policy`` (LoRA on the
LLM, the adapter-off reference, log-probs at the scored rows only), ``loss`` (the pDPO
objective), ``trainer`` (the accelerate-ready loop), ``pdpo`` (the command). Importing any of
them loads no weights.
"""
