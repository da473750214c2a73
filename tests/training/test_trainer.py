"""pDPO training on the tiny model: reference = policy at the start, a short run learns a toy
preference on held-out pairs, QLoRA (NF4) forward + backward on the CPU."""

from __future__ import annotations

import math

import torch

from training.config import LoraSettings, PDPOConfig
from training.data import load_pairs
from training.features import FeatureCache
from training.trainer import PDPOTrainer

# Small adapters and a large step size: a toy task on a toy model, trained in seconds.
TOY = PDPOConfig(
    learning_rate=1e-3, batch_pairs=4, warmup_ratio=0.0, lora=LoraSettings(r=8, alpha=16, dropout=0.0)
)


def test_fresh_adapter_policy_equals_reference_and_loss_is_log_2(fresh_tiny, tiny_model, toy_pairs):
    from training.policy import PairScorer
    from training.trainer import candidate_logps, group_inputs

    pairs = load_pairs(toy_pairs["held_out"], fresh_tiny.tokenizer).pairs[:3]
    trainer = PDPOTrainer(fresh_tiny, TOY)
    losses, logps = trainer.pair_losses(pairs)
    ref = trainer.reference_logps(pairs)
    assert torch.equal(logps, ref)  # LoRA B = 0: policy and reference bit-equal
    torch.testing.assert_close(losses.loss, torch.full((3,), math.log(2)))
    # the reference is the plain base model (a model without any adapter)
    base = PairScorer(tiny_model.model.llm)
    with torch.no_grad():
        plain = [
            candidate_logps(base, group_inputs(tiny_model.model, trainer.features, [p]))[0] for p in pairs
        ]
    torch.testing.assert_close(ref, torch.stack(plain), atol=1e-5, rtol=0)
    # another file numbers its records from 0 too: its pair 0 gets its own reference
    other = load_pairs(toy_pairs["train"], fresh_tiny.tokenizer).pairs[0]
    assert other.index == pairs[0].index == 0
    with torch.no_grad():
        own = candidate_logps(base, group_inputs(tiny_model.model, trainer.features, [other]))
    torch.testing.assert_close(trainer.reference_logps([other]), own, atol=1e-5, rtol=0)
    assert trainer.evaluate(pairs) == {
        "pairs": 3,
        "loss": losses.loss.mean().item(),
        "accuracy": 0.0,
        "margin": 0.0,
        "logp_accuracy": float((logps[:, 0] > logps[:, 1]).float().mean()),
    }


def test_batches_come_from_one_clip_unless_asked_otherwise(fresh_tiny, toy_pairs):
    from training.trainer import group_key

    pairs = load_pairs(toy_pairs["train"], fresh_tiny.tokenizer).pairs
    trainer = PDPOTrainer(fresh_tiny, PDPOConfig(**{**TOY.__dict__, "epochs": 2}), log=lambda m: None)
    batches = trainer.schedule(pairs)
    assert all(len({group_key(p) for p in batch}) == 1 for batch in batches)
    assert all(1 <= len(batch) <= 4 for batch in batches)
    epoch = len(batches) // 2
    for half in (batches[:epoch], batches[epoch:]):  # every pair once per epoch
        assert sorted(p.index for b in half for p in b) == list(range(len(pairs)))
    assert [p.index for p in batches[0]] != [p.index for p in batches[epoch]]  # reshuffled
    trainer.config = PDPOConfig(**{**TOY.__dict__, "group_by_clip": False})
    mixed = trainer.schedule(pairs)
    assert [len(b) for b in mixed] == [4, 4, 4, 4, 4, 1]
    assert any(len({group_key(p) for p in batch}) > 1 for batch in mixed)


def test_short_run_raises_held_out_preference_accuracy(fresh_tiny, toy_pairs, tmp_path):
    tok = fresh_tiny.tokenizer
    train, held_out = load_pairs(toy_pairs["train"], tok), load_pairs(toy_pairs["held_out"], tok)
    assert {p.pair_type for p in train.pairs} == {"step", "full_path"}
    trainer = PDPOTrainer(fresh_tiny, TOY, log=lambda m: None, log_file=tmp_path / "log.jsonl")
    summary = trainer.train(train.pairs, held_out.pairs)
    base, after = summary["base_eval"], summary["eval"]
    assert base["accuracy"] == 0.0 and abs(base["loss"] - math.log(2)) < 1e-6
    assert after["accuracy"] >= 0.9 > base["accuracy"]
    assert after["loss"] < 0.5 < base["loss"]
    assert after["margin"] > 0.5
    assert after["logp_accuracy"] >= base["logp_accuracy"]
    steps = [r for r in trainer.history if r["event"] == "step"]
    # 21 pairs on 3 clips (7 each) in batches of at most 4 from one clip: 3 x (4 + 3)
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert [r["groups"] for r in steps] == [1] * 6
    assert abs(steps[0]["loss"] - math.log(2)) < 1e-6
    assert sum(r["pairs"] for r in steps) == 21 == summary["pairs_seen"]
    logged = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(logged) == 8  # base eval, 6 steps, final eval


def test_runs_are_seeded(tiny_checkpoint, toy_pairs):
    from inference.model.loading import LoadSettings, load_model

    config = PDPOConfig(**{**TOY.__dict__, "max_steps": 2, "lora": LoraSettings(r=8, alpha=16, dropout=0.1)})
    results = []
    for _ in range(2):
        loaded = load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="none"))
        pairs = load_pairs(toy_pairs["train"], loaded.tokenizer).pairs
        trainer = PDPOTrainer(loaded, config, log=lambda m: None)
        trainer.train(pairs)
        results.append(([r["loss"] for r in trainer.history], trainer.llm.state_dict()))
    assert results[0][0] == results[1][0]
    for key, value in results[0][1].items():
        if "lora" in key:
            assert torch.equal(value, results[1][1][key]), key


def test_qlora_nf4_forward_backward_step_on_cpu(tiny_checkpoint, toy_pairs):
    import bitsandbytes as bnb

    from inference.model.loading import LoadSettings, load_model

    loaded = load_model(LoadSettings(checkpoint=str(tiny_checkpoint), device="cpu", quantization="4bit"))
    pairs = load_pairs(toy_pairs["train"], loaded.tokenizer).pairs
    config = PDPOConfig(**{**TOY.__dict__, "max_steps": 2, "quantization": "4bit"})
    trainer = PDPOTrainer(loaded, config, FeatureCache(loaded.model), log=lambda m: None)
    layer = trainer.llm.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer.base_layer, bnb.nn.Linear4bit) and layer.base_layer.weight.quant_type == "nf4"
    before = {k: v.clone() for k, v in trainer.llm.state_dict().items() if "lora_B" in k}
    # an evaluation first: the eval-mode, no-grad pass that bitsandbytes would repack NF4 for
    assert abs(trainer.evaluate(pairs[:2])["loss"] - math.log(2)) < 1e-6
    summary = trainer.train(pairs)
    assert summary["steps"] == 2 and all(math.isfinite(r["loss"]) for r in trainer.history)
    assert abs(trainer.history[0]["loss"] - math.log(2)) < 1e-6
    after = trainer.llm.state_dict()
    assert all(not torch.equal(v, after[k]) for k, v in before.items())  # every B moved
    assert trainer.history[1]["grad_norm"] > 0
