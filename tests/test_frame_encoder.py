"""The learnt frame encoder (mer_core.frame_encoder): per-frame encodings that ignore padding, invalid frames and
other clips; every registered method wrapped and trained through it on a tiny face-crop store; checkpoints that
reload to the same predictions; OpenFace-feature stores build exactly the models they did before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import entry as run_entry
from helpers import resolved_run
from tiny import CLASSES, NO_VISUAL_CLIP
from torch import nn

from mer_core.conditions import apply_condition
from mer_core.config import ConfigError
from mer_core.data.batches import Batch, load_fold
from mer_core.data.folds import make_splits
from mer_core.data.store import Sequences, read_store, write_store
from mer_core.evaluate import predict
from mer_core.frame_encoder import FrameEncoded, FrameEncoder, FrameEncoderSpec, build_stage
from mer_core.methods.lookup import method_spec
from mer_core.methods.registry import ModelContext
from mer_core.params.methods import CATALOG
from mer_core.params.training import FrameEncoder as FrameEncoderParams
from mer_core.schema import check
from mer_core.tasks import study_task
from mer_core.train import fit_run, load_model, subnetworks, update_steps

SIZE = 8  # crop side of the tiny store
CFG = {"dim": 6, "channels": [4, 4], "groups": 2}  # conftest's tiny_params train.frame_encoder
CROPS_FEATURES = {"visual": {"extractor": "face_crops", "face_crops": {"size": SIZE}}}
CPU = torch.device("cpu")


def build_crop_store(root: Path, seed: int = 0):
    """A tiny store in the face-crop layout: 8 speakers x 12 clips, 5-d audio frames and 8x8 grey crops in [0, 1]
    (a bright 3x3 patch whose place depends on the class, plus noise), a few invalid (all-zero) crops and one clip
    without crops; manifest with `features.visual.extractor: face_crops`, size 8."""
    rng = np.random.default_rng(seed)
    audio_centres = rng.normal(0.0, 1.5, (len(CLASSES), 5))
    rows, frames, valid = [], {"audio": [], "visual": []}, {"audio": [], "visual": []}
    for s in range(8):
        speaker = str(1001 + s)
        for c in range(12):
            k = c % len(CLASSES)
            clip_id = f"{speaker}_{c:02d}"
            n_audio, n_visual = int(rng.integers(4, 16)), 0 if clip_id == NO_VISUAL_CLIP else int(rng.integers(3, 9))
            frames["audio"].append((rng.normal(0.0, 1.0, (n_audio, 5)) + audio_centres[k]).astype(np.float32))
            valid["audio"].append(np.ones(n_audio, bool))
            crops = rng.uniform(0.0, 0.3, (n_visual, SIZE, SIZE))
            row, col = divmod(k, 3)
            crops[:, 1 + 3 * row : 4 + 3 * row, 1 + 2 * col : 4 + 2 * col] += 0.6
            ok = np.ones(n_visual, bool)
            if c % 3 == 0:
                ok[0] = False  # no face found: an all-zero crop
            crops[~ok] = 0.0
            frames["visual"].append(crops.reshape(n_visual, SIZE * SIZE).astype(np.float32))
            valid["visual"].append(ok)
            rows.append(
                {
                    "clip_id": clip_id,
                    "speaker": speaker,
                    "label": CLASSES[k],
                    "has_audio": True,
                    "has_visual": n_visual > 0,
                }
            )
    meta = pd.DataFrame(rows)
    dims = {"audio": 5, "visual": SIZE * SIZE}
    sequences = {m: Sequences.from_list(list(meta["clip_id"]), frames[m], valid[m], d) for m, d in dims.items()}
    manifest = {
        "corpus": "builtin",
        "modalities": ["audio", "visual"],
        "classes": list(CLASSES),
        "dims": dims,
        "frame_rates": {"audio": 100.0 / 3.0, "visual": 5.0},
        "features": CROPS_FEATURES,
    }
    write_store(root, meta, make_splits(meta, {"n_folds": 4, "n_val_speakers": 1, "seed": 0}), sequences, manifest)
    return read_store(root)


@pytest.fixture
def crop_store(tmp_path):
    return build_crop_store(tmp_path / "features" / "builtin")


def crop_context(store) -> tuple[ModelContext, FrameEncoderSpec]:
    """The context the methods see on `store` (visual dim = the encoding's) and the frame encoder's spec."""
    frames = FrameEncoderSpec.for_store(store.manifest, CFG)
    context = ModelContext.from_manifest(store.manifest, study_task("classification", store.manifest))
    return frames.context(context), frames


def build_stages(name: str, entry: dict, context: ModelContext, frames: FrameEncoderSpec | None) -> list[nn.Module]:
    """The model of every stage of method `name`, each built from the one before."""
    models, previous = [], None
    for stage in method_spec(name).stages:
        previous = build_stage(stage, entry, context, previous, frames)
        models.append(previous)
    return models


def first_batch(store) -> Batch:
    return next(load_fold(store, 0)["train"].batches(16, torch.Generator().manual_seed(0)))


def crops(n: int, t: int, seed: int) -> torch.Tensor:
    return torch.rand(n, t, SIZE * SIZE, generator=torch.Generator().manual_seed(seed))


# ================================================================================================ the encoder


def test_encoder_maps_every_valid_frame_to_dim_and_the_rest_to_zero():
    torch.manual_seed(0)
    encoder = FrameEncoder(SIZE, 6, (4, 8), 2)
    x = crops(3, 5, 0)
    x[0, 2] = 0.0  # an invalid frame (no face)
    lengths = torch.tensor([5, 3, 0])
    x[1, 3:] = 0.0  # padding
    out = encoder(x, lengths)
    assert out.shape == (3, 5, 6)
    zero = torch.zeros(3, 5, dtype=torch.bool)
    zero[0, 2], zero[1, 3:], zero[2] = True, True, True  # invalid, padding, a clip without frames
    assert (out[zero] == 0).all() and (out[~zero].abs().sum(-1) > 0).all()
    x[2, :2] = 1.0  # frames beyond a clip's length are padding whatever they hold
    assert torch.equal(encoder(x, lengths)[2], torch.zeros(5, 6))
    assert encoder(torch.zeros(2, 4, SIZE * SIZE), torch.tensor([4, 2])).abs().sum() == 0  # no valid frame at all


@pytest.mark.parametrize("training", [True, False])
def test_padding_invalid_frames_and_other_clips_do_not_change_a_clips_encoding(training):
    torch.manual_seed(1)
    encoder = FrameEncoder(SIZE, 6, (4, 8), 2).train(training)
    clip = crops(1, 4, 1)
    alone = encoder(clip, torch.tensor([4]))
    padded = torch.cat([clip, torch.zeros(1, 6, SIZE * SIZE)], 1)  # six padded frames appended
    torch.testing.assert_close(encoder(padded, torch.tensor([4]))[:, :4], alone, rtol=0, atol=1e-6)
    others = crops(3, 10, 2)
    others[1, 5] = 0.0  # an invalid frame in another clip
    batch = torch.cat([others[:1], padded, others[1:]])  # the clip among longer ones, at row 1
    torch.testing.assert_close(encoder(batch, torch.tensor([10, 4, 7, 10]))[1, :4], alone[0], rtol=0, atol=1e-6)


def test_the_encoder_stack_follows_the_settings():
    encoder = FrameEncoder(64, 32, (16, 32, 64), 4)
    kinds = [type(layer).__name__ for layer in encoder.convs]
    assert kinds == ["Conv2d", "GroupNorm", "ReLU", "MaxPool2d"] * 3 + ["AdaptiveAvgPool2d", "Flatten"]
    convs = [layer for layer in encoder.convs if isinstance(layer, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 16, (3, 3)),
        (16, 32, (3, 3)),
        (32, 64, (3, 3)),
    ]
    assert all(n.num_groups == 4 for n in encoder.convs if isinstance(n, nn.GroupNorm))
    assert (encoder.project.in_features, encoder.project.out_features) == (64, 32)


# ================================================================================================ the spec


def test_spec_only_for_face_crop_stores(tiny_store, crop_store):
    assert FrameEncoderSpec.for_store(tiny_store.manifest, CFG) is None  # OpenFace features (no `features` entry)
    openface = {**crop_store.manifest, "features": {"visual": {"groups": ["au_r"], "fps": 30}}}
    assert FrameEncoderSpec.for_store(openface, CFG) is None
    spec = FrameEncoderSpec.for_store(crop_store.manifest, CFG)
    assert spec == FrameEncoderSpec(SIZE, 6, (4, 4), 2, "visual")
    context = ModelContext.from_manifest(crop_store.manifest, study_task("classification", crop_store.manifest))
    assert context.dims == {"audio": 5, "visual": 64} and spec.context(context).dims == {"audio": 5, "visual": 6}
    assert spec.context(context).modalities == context.modalities


def test_spec_errors_name_the_key_and_the_file(crop_store):
    with pytest.raises(
        ConfigError,
        match=r"train\.frame_encoder\.groups: 3 does not divide the channel count 4; "
        r"choose groups dividing every entry of channels \[4, 4\]",
    ):
        check(FrameEncoderParams, {**CFG, "groups": 3}, "train.frame_encoder")
    with pytest.raises(ConfigError, match=r"train\.frame_encoder\.channels: 4 blocks .* 8 x 8 crops .* at most 3"):
        FrameEncoderSpec.for_store(crop_store.manifest, {**CFG, "channels": [2, 2, 2, 2]})
    broken = {**crop_store.manifest, "dims": {"audio": 5, "visual": 60}}
    with pytest.raises(ValueError, match=r"manifest\.json: visual dim 60 is not 8 x 8"):
        FrameEncoderSpec.for_store(broken, CFG)


# ================================================================================================ the wrapper


@pytest.mark.parametrize("name", sorted(set(CATALOG) - {"audio_only", "functionals_svm"}))  # they read no face
def test_every_method_is_wrapped_and_its_loss_trains_the_encoder(name, crop_store, tiny_params):
    entry = run_entry(tiny_params(crop_store), name)
    context, frames = crop_context(crop_store)
    torch.manual_seed(0)
    models = build_stages(name, entry, context, frames)
    batch = first_batch(crop_store)
    assert batch.x["visual"].shape[2] == SIZE * SIZE
    for model in models:
        assert isinstance(model, FrameEncoded) and model.encoder.dim == 6
        model.train().zero_grad(set_to_none=True)
        seen = batch if model is models[0] else apply_condition(batch, ("visual",))  # stage 2: audio missing
        loss = next(update_steps(model, seen, batch))  # VAVL's first step is the visual one
        loss.backward()
        grads = [p.grad for p in model.encoder.parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
        if model.teacher is not None:
            assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
        model.eval()
        assert model(batch).shape == (len(batch.y), len(CLASSES))


def test_a_model_that_does_not_read_the_crops_is_not_wrapped(crop_store, tiny_params):
    entry = run_entry(tiny_params(crop_store), "audio_only")
    context, frames = crop_context(crop_store)
    (model,) = build_stages("audio_only", entry, context, frames)
    assert not isinstance(model, FrameEncoded) and list(model.encoders) == ["audio"]


def test_a_later_stage_keeps_the_trained_encoder_and_a_frozen_teacher_encodes_full(crop_store, tiny_params):
    entry = run_entry(tiny_params(crop_store), "mmin")
    context, frames = crop_context(crop_store)
    torch.manual_seed(0)
    stage1 = build_stage(method_spec("mmin").stages[0], entry, context, None, frames)
    with torch.no_grad():
        for p in stage1.encoder.parameters():
            p.add_(0.1)  # "trained"
    stage2 = build_stage(method_spec("mmin").stages[1], entry, context, stage1, frames)
    trained = stage1.encoder.state_dict()
    for encoder in (stage2.encoder, stage2.teacher):
        assert encoder is not stage1.encoder
        assert all(torch.equal(v, trained[k]) for k, v in encoder.state_dict().items())
    assert stage2.model.encoders["audio"] is not stage1.model.encoders["audio"]  # the method's own stage-2 build
    assert all(p.requires_grad for p in stage2.encoder.parameters())
    stage2.train()
    assert stage2.training and not stage2.teacher.training and not stage2.model.teacher.training
    with torch.no_grad():
        for p in stage2.encoder.parameters():
            p.add_(0.5)  # the student moves on; the teacher does not
    full = first_batch(crop_store)
    batch = full.replace(present=full.present & torch.tensor([True, False]))
    encoded = stage2.encode_full(batch, full, stage2.encode(batch, stage2.encoder))
    torch.testing.assert_close(encoded.x["visual"], stage1.encoder(full.x["visual"], full.lengths["visual"]))
    assert torch.equal(encoded.x["audio"], full.x["audio"]) and not encoded.x["visual"].requires_grad


def test_gradient_groups_are_the_inner_models_then_the_encoder(crop_store, tiny_params):
    entry = run_entry(tiny_params(crop_store), "mmin")
    context, frames = crop_context(crop_store)
    stage2 = build_stages("mmin", entry, context, frames)[1]
    groups = subnetworks(stage2)
    assert [len(g) for g in groups[:-1]] == [len(g) for g in subnetworks(stage2.model)]
    assert [id(p) for p in groups[-1]] == [id(p) for p in stage2.encoder.parameters()]
    assert sum(len(g) for g in groups) == sum(p.requires_grad for p in stage2.parameters())  # teachers excluded


class StepRecorder(nn.Module):
    """Three optimiser steps per batch, each recording the visual frames it is given."""

    modalities = ("audio", "visual")

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.seen = []

    def steps(self, batch: Batch, full: Batch):
        for _ in range(3):
            self.seen.append(batch.x["visual"].detach().clone())
            yield (self.weight * batch.x["visual"]).square().mean()


def test_each_step_sees_the_frames_encoded_after_the_previous_update(crop_store):
    torch.manual_seed(0)
    model = FrameEncoded(StepRecorder(), FrameEncoder(SIZE, 6, (4, 4), 2), "visual")
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    batch, expected = first_batch(crop_store), []
    for loss in update_steps(model, batch, batch):
        expected.append(model.encoder(batch.x["visual"], batch.lengths["visual"]).detach())  # the encoder of now
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert len(model.model.seen) == len(expected) == 3
    for seen, encoding in zip(model.model.seen, expected):
        torch.testing.assert_close(seen, encoding, rtol=0, atol=0)
    assert not torch.equal(model.model.seen[0], model.model.seen[1])  # the encoder did move between steps


def test_a_model_without_steps_makes_one_step(crop_store, tiny_params):
    entry = run_entry(tiny_params(crop_store), "utt_fusion")
    context, frames = crop_context(crop_store)
    (model,) = build_stages("utt_fusion", entry, context, frames)
    batch = first_batch(crop_store)
    torch.manual_seed(3)
    losses = list(update_steps(model.train(), batch, batch))
    torch.manual_seed(3)
    assert len(losses) == 1 and torch.equal(losses[0], model.loss(batch, batch)[0])


def test_vavl_reconstruction_target_of_learnt_frames_takes_no_gradient(crop_store, tiny_params):
    entry = {**run_entry(tiny_params(crop_store), "vavl"), "head_dropout": 0.0}
    context, frames = crop_context(crop_store)
    (model,) = build_stages("vavl", entry, context, frames)
    vavl = model.model
    with torch.no_grad():  # constant outputs: the task loss and the reconstruction give no gradient to the input...
        for net in (vavl.heads["visual"], vavl.reconstruction["visual"]):
            net[-1].weight.zero_()
    batch = first_batch(crop_store)
    encoded = model.encode(batch, model.encoder)
    frames_in = encoded.x["visual"].detach().requires_grad_()
    loss = vavl.modality_loss(encoded.replace(x={**encoded.x, "visual": frames_in}), "visual")
    assert vavl.rec_weight == 2.0 and loss > 0
    loss.backward()
    assert frames_in.grad.abs().max() == 0  # ... and neither does the target, the frames' mean


# =============================================================================================== training and reloading


@pytest.mark.parametrize("run", ["utt_fusion", "mmin", "vavl"])
def test_fit_run_trains_on_crops_and_the_checkpoint_reproduces_the_predictions(run, crop_store, tiny_params, tmp_path):
    params = tiny_params(crop_store, epochs=1)
    output = fit_run(resolved_run(run, params), 0, 0, tmp_path / "ckpt", show_progress=False)
    assert np.isfinite(output.history["train_loss"]).all()
    checkpoint = torch.load(tmp_path / "ckpt" / "fold0-seed0.pt")
    assert checkpoint["frame_encoder"] == {
        "size": SIZE,
        "dim": 6,
        "channels": (4, 4),
        "groups": 2,
        "modality": "visual",
    }
    assert checkpoint["context"]["dims"] == {"audio": 5, "visual": 6}
    assert any(k.startswith("encoder.convs.0.") for k in checkpoint["state_dict"])
    model = load_model(checkpoint)
    assert isinstance(model, FrameEncoded) and not model.training
    test = load_fold(read_store(crop_store.root), 0)["test"]
    reloaded = predict(model, test, run_entry(params, run)["optim"]["batch_size"], CPU)
    pd.testing.assert_frame_equal(reloaded, output.predictions.drop(columns=["fold", "seed"]), check_exact=True)
    if run == "mmin":
        pretrain = torch.load(tmp_path / "ckpt" / "fold0-seed0-pretrain.pt")
        stage1 = load_model(pretrain)
        assert type(stage1.model).__name__ == "UttFusion" and stage1.teacher is None
        assert any(k.startswith("teacher.") for k in checkpoint["state_dict"])  # the frozen stage-1 encoder


def test_an_openface_store_builds_exactly_the_models_it_did_before(tiny_store, tiny_params):
    params = tiny_params(tiny_store, methods={"functionals_svm": {"method": "functionals_svm"}})
    context = ModelContext.from_manifest(tiny_store.manifest, study_task("classification", tiny_store.manifest))
    frames = FrameEncoderSpec.for_store(tiny_store.manifest, params["train"]["frame_encoder"])
    assert frames is None
    for name in sorted(CATALOG):
        entry = run_entry(params, name)
        torch.manual_seed(0)
        plain, previous = [], None
        for stage in method_spec(name).stages:
            previous = stage.build(entry, context, previous)
            plain.append(previous)
        after_plain = torch.rand(3)
        torch.manual_seed(0)
        built = build_stages(name, entry, context, frames)
        assert torch.equal(torch.rand(3), after_plain)  # the same random number stream
        for a, b in zip(plain, built):
            assert type(a) is type(b)
            assert list(a.state_dict()) == list(b.state_dict())
            assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_an_openface_checkpoint_reloads_without_a_frame_encoder(tiny_store, tiny_params, tmp_path):
    params = tiny_params(tiny_store, epochs=1)
    output = fit_run(resolved_run("mmin", params), 0, 0, tmp_path, show_progress=False)
    checkpoint = torch.load(tmp_path / "fold0-seed0.pt")
    assert "frame_encoder" not in checkpoint
    model = load_model(checkpoint)
    assert type(model).__name__ == "MMIN"
    reloaded = predict(model, load_fold(read_store(tiny_store.root), 0)["test"], 16, CPU)
    pd.testing.assert_frame_equal(reloaded, output.predictions.drop(columns=["fold", "seed"]), check_exact=True)
