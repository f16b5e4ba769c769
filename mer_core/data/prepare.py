"""The prepare step: corpus adapter -> feature extraction -> folds -> feature store (docs/design.md, "Data flow").

It dispatches on the corpus's kind (`mer_core.data.corpora.registry`). A *media* corpus is listed with its options
(`data.<corpus>`), its notes (what the adapter preferred or dropped) printed and kept in the manifest; features
are extracted on `jobs` processes (`machine.jobs`) with a progress bar, and speaker-independent folds are drawn
(`folds` params: k-fold, or the corpus's own protocol).
Nothing is dropped without a record. A file that cannot be read (unreadable, truncated, silent, values out of
range: `mer_core.data.media`, `mer_core.data.openface`) stops the run with an error naming it (`data.on_error:
raise`); with `skip` that modality of the clip is dropped (the clip stays with what it has, `has_<modality>`
False; a clip left with no modality is dropped), with `skip_clip` the whole clip is dropped. A clip the corpus
lists without a file for a modality (e.g. a face CSV without its WAV) keeps its other modalities (with
`skip_clip`: is dropped) whatever `on_error` says. Each such (clip, modality) is a row of `<store>/skipped.csv`
(`SKIPPED_COLUMNS`: clip_id, modality, path, reason, action = `clip dropped` | `modality dropped`), counted in the
manifest (`counts.skipped`: clips dropped; `counts.modalities_dropped`: clips kept without a modality), and
summarised on stderr once the store is written (`report_skipped`: from inside a papermill-executed notebook it
reaches both the `dvc repro` console and the notebook). A *feature package* (e.g. `iemocap_mmin`)
brings its features and its own folds: the `features`, `folds` and `data.on_error` params are not used
(the manifest says so) and a bad package always raises. The store is written atomically, so an
interrupted run leaves nothing that looks done; the extraction workers die with the prepare process
(`mer_core.workers`), and one that dies alone (killed, out of memory) stops the run with a `WorkerError`.

A modality that no clip has a file for (CREMA-D with `AudioWAV/` only) is left out of the store, with one line naming
it and where the adapter looked (`clips.attrs["sources"]`); one that only some clips lack is reported with counts.
Both lines are told on the console and in the notebook (`mer_core.console.tell`) and kept in the manifest's notes.
Progress bars go to the console only (`mer_core.console.progress`), so an executed notebook does not depend on
timing. The validation and test partitions that lack a class (a speaker who never recorded it) are recorded in the
manifest's `missing_classes` (`mer_core.data.folds.check_classes`).

Functionals (the openSMILE sets the study's runs read: the `functionals` list the params stage writes into the
stage's params, `mer_core.config.needed_functionals`): one vector per clip, from the same read of the audio as its
frame features, in the same pass, workers and cache; and of each noisy audio variant, in its pass. Stored as
`functionals/<set>.npz` and `functionals/<variant>/<set>.npz` (`mer_core.data.store`).

Extraction is resumable (`mer_core.data.extract_cache`): each finished item of work (both passes below) is
kept in `<data.cache_dir>/extract/<corpus>/` as its chunk comes back, a rerun extracts only what is not there
(the progress bars count the rest as done), and the folder is removed once the store is written.

Signal-level corruptions (`features.corruptions`, media corpora only) are extracted only when the robustness grid
tests them (`robustness.signal`), beside the clean features for every clip that has the modality (each clip is a test
clip in some fold; the variants are used at test time only), with the same extractor settings and frame counts
(`mer_core.noise.signal`):
- visual: in the same pass as the clean features, from the same read of each OpenFace CSV or video
  (`features.read_visual`): bursts of tracking failures over `visual_dropout` of the raw frames (zeroed like
  `success = 0` rows or frames without a face), then the same rate reduction;
- audio: in a second pass on the same workers, since babble needs the list of readable clips: the clip's audio
  mixed at each SNR with white noise or with babble of `babble_talkers` clips of other speakers.
Every draw comes from a generator seeded by (`corruptions.seed`, the clip's index in the corpus listing), so the
variants do not depend on `jobs`. They are stored as `corruptions/<variant>.npz` and listed in
`manifest["corruptions"]` (`mer_core.data.store`); a corruption that fails stops the run with an error naming
the file, whatever `data.on_error` says (a clip or modality skipped for a bad file has no variants of it: zero
frames, and a clip without readable audio is never a babble talker).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd

from mer_core.console import progress, tell
from mer_core.data.corpora.base import ATTRIBUTES, CorpusError
from mer_core.data.corpora.registry import CORPORA, Corpus
from mer_core.data.extract_cache import ExtractionCache, remove_cache, settings_digest
from mer_core.data.features import (
    FUNCTIONAL_SETS,
    AudioError,
    audio_dim,
    audio_frame_rate,
    extract_audio,
    extract_visual,
    read_visual,
    reduce_visual,
    visual_dim,
    wave_features,
    wave_functionals,
)
from mer_core.data.folds import check_classes, draw_folds
from mer_core.data.media import VideoError, read_audio
from mer_core.data.openface import OpenFaceError
from mer_core.data.store import FeatureStore, Sequences, functionals_file, read_store, write_store
from mer_core.noise.signal import babble_noise, mix_at_snr, tracking_dropout, white_noise
from mer_core.schema import ConfigError
from mer_core.workers import spawn_pool

ON_ERROR = ("raise", "skip", "skip_clip")  # data.on_error (see module docstring)
SKIPPED_COLUMNS = ["clip_id", "modality", "path", "reason", "action"]
CLIP_DROPPED, MODALITY_DROPPED = "clip dropped", "modality dropped"  # skipped.csv's actions
REPORTED_ROWS = 10  # rows of skipped.csv that the console summary shows

EXTRACTORS = {"audio": extract_audio, "visual": extract_visual}
INPUT_ERRORS = (AudioError, OpenFaceError, VideoError)
STREAMS = {"babble": 1, "white": 2, "tracking_dropout": 3}  # sub-seeds: np.random.default_rng([seed, index, s, ...])
CHUNK = 64  # jobs per worker task


class CorruptionError(RuntimeError):
    """A corruption job failed on a clip; the message names the file (and the variant or the talkers)."""


class WorkerError(RuntimeError):
    """A worker process ended abruptly (killed, out of memory); nothing was written, a rerun resumes."""


def store_path(params: dict) -> Path:
    """Where the feature store of the configured corpus lives: `<features_dir>/<corpus>`."""
    return Path(params["data"]["features_dir"]) / params["data"]["corpus"]


def cache_path(params: dict) -> Path:
    """Where the resumable extraction work of the configured corpus lives: `<cache_dir>/extract/<corpus>`.
    Raises ConfigError when it lies inside `features_dir` (DVC deletes that before it reruns prepare)."""
    data_cfg = params["data"]
    folder = Path(data_cfg["cache_dir"]) / "extract" / data_cfg["corpus"]
    if folder.resolve().is_relative_to(Path(data_cfg["features_dir"]).resolve()):
        raise ConfigError(
            f"data.cache_dir: {data_cfg['cache_dir']!r} is inside data.features_dir "
            f"({data_cfg['features_dir']!r}), which DVC deletes before it reruns prepare; "
            "choose a folder outside it (default: data/cache)"
        )
    return folder


def worker_pool(n_jobs: int) -> ProcessPoolExecutor | None:
    """`min(n_jobs, cpus)` spawned worker processes that die with this one, or None for one (work then runs in
    this process)."""
    n_jobs = min(n_jobs, os.cpu_count() or 1)
    return spawn_pool(n_jobs) if n_jobs > 1 else None


def map_chunks(worker, jobs: list, args: tuple, pool: ProcessPoolExecutor | None, desc: str, done: int = 0):
    """Yield `worker(chunk, *args)` for chunks of `jobs` in order, on `pool` (None: here), with a progress bar
    that starts at `done` (jobs finished earlier, e.g. loaded from the cache)."""
    chunks = [jobs[k : k + CHUNK] for k in range(0, len(jobs), CHUNK)]
    bar = progress(total=done + len(jobs), initial=done, desc=desc + (" (resumed)" if done else ""), unit="file")
    if pool is None:
        results = (worker(chunk, *args) for chunk in chunks)
    else:
        results = pool.map(worker, chunks, *([arg] * len(chunks) for arg in args))
    try:
        for chunk, result in zip(chunks, results):
            yield result
            bar.update(len(chunk))
    except BrokenProcessPool as err:
        raise WorkerError(
            f"{desc}: a worker process ended abruptly (killed, or out of memory?); nothing was "
            "written; rerun the step: the finished work is kept in the extraction cache"
        ) from err
    finally:
        bar.close()


def functionals_name(name: str, variant: str | None = None) -> str:
    """The name of a clip's functionals vector among its extracted pairs (and in the cache): `functionals.<set>`, or
    `<variant>.functionals.<set>` for those of a corruption variant."""
    return f"functionals.{name}" if variant is None else f"{variant}.functionals.{name}"


def functionals_pairs(wave: np.ndarray, sets: list[str], source: str, variant: str | None = None) -> dict:
    """{functionals_name(set, variant): (vector as one frame (1, D), valid (1,))} of a 16 kHz signal."""
    return {
        functionals_name(name, variant): (wave_functionals(wave, name, source)[None], np.ones(1, bool)) for name in sets
    }


def _extract_chunk(jobs: list[tuple[int, str, str]], cfg: dict, on_error: str, specs: list[dict], sets: list[str] = ()):
    """Worker: extract (index, modality, path) jobs, and the visual corruption variants `specs` of each face
    stream from the same read (the audio's functionals `sets` likewise); returns (index, modality, frames, valid,
    {variant or functionals name: (frames, valid)}) results and errors (or raises with `raise`)."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # the face detector: one thread per worker, as torch
    results, errors = [], []
    for index, modality, path in jobs:
        try:
            if modality == "visual" and specs:
                frames, valid = read_visual(path, cfg["visual"])
                variants = _corrupt_visual(index, path, frames, valid, cfg, specs)
                results.append(
                    (index, modality, *reduce_visual(frames, valid, cfg["visual"]["rate_reduction"]), variants)
                )
            elif modality == "audio" and sets:
                wave = read_audio(path)
                frames = wave_features(wave, cfg["audio"], path)
                results.append(
                    (index, modality, frames, np.ones(len(frames), bool), functionals_pairs(wave, sets, path))
                )
            else:
                results.append((index, modality, *EXTRACTORS[modality](path, cfg[modality]), {}))
        except INPUT_ERRORS as err:
            if on_error == "raise":
                raise
            errors.append((index, modality, path, str(err)))
    return results, errors


def extract_all(
    clips: pd.DataFrame,
    modalities: tuple[str, ...],
    cfg: dict,
    on_error: str,
    specs: list[dict] | None = None,
    pool: ProcessPoolExecutor | None = None,
    cache: ExtractionCache | None = None,
    workers: int = 1,
    sets: list[str] = (),
):
    """Extract every (clip, modality) in parallel: {(index, modality): (frames, valid)}, the errors, and
    {(variant, index): (frames, valid)} for the visual corruption variants among `specs` and the audio's functionals
    `sets` (named by `functionals_name`).

    `pool`: worker processes to use (left open); by default a pool of `workers` is opened and shut here.
    `cache`: a (clip, modality) found there is loaded instead of extracted, and each one extracted is saved there
    (clean features and variants, named by modality and variant) as its chunk comes back; errors are not saved.
    """
    jobs = [
        (i, m, clips.at[i, f"{m}_path"])
        for m in modalities
        for i in clips.index
        if isinstance(clips.at[i, f"{m}_path"], str)
    ]
    visual = [spec for spec in specs or [] if spec["modality"] == "visual"]
    names = {
        m: [m]
        + [spec["name"] for spec in visual if m == "visual"]
        + [functionals_name(name) for name in sets if m == "audio"]
        for m in modalities
    }
    keys = {(i, m): cache.key(("features", i, m), [path]) for i, m, path in jobs} if cache else {}
    done = {(i, m): pairs for (i, m), key in keys.items() if (pairs := cache.load(key, names[m])) is not None}
    todo = [job for job in jobs if job[:2] not in done]
    own = pool is None
    pool = worker_pool(workers) if own else pool
    out, errors, variants = {}, [], {}
    for (index, modality), pairs in done.items():
        out[(index, modality)] = pairs.pop(modality)
        variants.update({(name, index): value for name, value in pairs.items()})
    try:
        for chunk_results, chunk_errors in map_chunks(
            _extract_chunk, todo, (cfg, on_error, visual, list(sets)), pool, "features", len(done)
        ):
            for index, modality, frames, valid, clip_variants in chunk_results:
                out[(index, modality)] = (frames, valid)
                variants.update({(name, index): value for name, value in clip_variants.items()})
                if cache:
                    cache.save(keys[(index, modality)], {modality: (frames, valid), **clip_variants})
            errors += chunk_errors
    finally:
        if own and pool is not None:
            pool.shutdown(cancel_futures=True)
    return out, errors, variants


# ================================================================================================ corruptions


def corruption_specs(feat_cfg: dict, modalities: tuple[str, ...]) -> list[dict]:
    """The manifest entries of the variants that `features.corruptions` sets for a corpus with `modalities`, in
    params order (audio: noise-major, then SNR; then visual). Two settings that give one name raise ConfigError."""
    cfg = feat_cfg["corruptions"]
    specs = []
    if "audio" in modalities:
        for noise in cfg["audio_noises"]:
            settings = {"seed": cfg["seed"], **({"talkers": cfg["babble_talkers"]} if noise == "babble" else {})}
            for snr in cfg["audio_snr_db"]:
                specs.append(
                    {
                        "name": f"audio_{noise}_{float(snr):g}db",
                        "modality": "audio",
                        "kind": noise,
                        "level": float(snr),
                        "unit": "dB",
                        "settings": settings,
                    }
                )
    if "visual" in modalities and cfg["visual_dropout"]:
        burst = cfg["dropout_burst_s"] * feat_cfg["visual"]["fps"]
        if burst < 1.0:
            raise ConfigError(
                f"features.corruptions.dropout_burst_s: {cfg['dropout_burst_s']} s x "
                f"{feat_cfg['visual']['fps']} fps is {burst:g} frames; a burst needs at least one frame"
            )
        for fraction in cfg["visual_dropout"]:
            specs.append(
                {
                    "name": f"visual_dropout_{round(100 * fraction)}",
                    "modality": "visual",
                    "kind": "tracking_dropout",
                    "level": float(fraction),
                    "unit": "fraction",
                    "settings": {"seed": cfg["seed"], "burst_s": cfg["dropout_burst_s"], "burst_frames": burst},
                }
            )
    names = [spec["name"] for spec in specs]
    for spec in specs:
        if names.count(spec["name"]) > 1:
            key = "audio_noises / audio_snr_db" if spec["modality"] == "audio" else "visual_dropout"
            raise ConfigError(
                f"features.corruptions.{key}: two entries give the variant {spec['name']!r} "
                "(a repeated noise or SNR, or dropout fractions equal in percent)"
            )
    return specs


def _corrupt_visual(
    index: int, path: str, frames: np.ndarray, valid: np.ndarray, cfg: dict, specs: list[dict]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{variant: (frames, valid)} of one clip's raw visual frames and mask, rate-reduced like the clean ones."""
    seed = cfg["corruptions"]["seed"]
    out = {}
    for spec in specs:
        rng = np.random.default_rng([seed, index, STREAMS["tracking_dropout"], round(100 * spec["level"])])
        try:
            kept = tracking_dropout(valid, spec["level"], spec["settings"]["burst_frames"], rng)
        except ValueError as err:
            raise CorruptionError(f"{path}: {spec['name']}: {err}") from err
        dropped = frames.copy()
        dropped[~kept] = 0.0  # as read_visual does for success = 0 or no face
        out[spec["name"]] = reduce_visual(dropped, kept, cfg["visual"]["rate_reduction"])
    return out


def babble_talkers(index: int, speaker: str, pool: dict[str, list[int]], n: int, seed: int) -> list[int]:
    """Indices of up to `n` babble talkers for clip `index` of `speaker`: clips of other speakers (`pool`:
    speaker -> clip indices), one per speaker in a random order, round after round while clips remain; drawn
    from `np.random.default_rng([seed, index])`."""
    others = [s for s in sorted(pool) if s != speaker]
    if not others:
        raise ConfigError(
            "features.corruptions.audio_noises: babble needs clips of other speakers and the corpus "
            f"has only speaker {speaker!r}; remove babble"
        )
    rng = np.random.default_rng([seed, index])
    queue = [others[k] for k in rng.permutation(len(others))]
    taken: set[int] = set()
    picked: list[int] = []
    while len(picked) < n and queue:
        for s in list(queue):
            left = [j for j in pool[s] if j not in taken]
            j = left[int(rng.integers(len(left)))]
            taken.add(j)
            picked.append(j)
            if len(left) == 1:
                queue.remove(s)
            if len(picked) == n:
                break
    return picked


def _corrupt_audio(
    index: int, path: str, talkers: list[str], cfg: dict, specs: list[dict], cache: dict, sets: list[str] = ()
):
    """{variant: frames} of one clip's audio, and {functionals_name(set, variant): (1, D) vector} for each of the
    functionals `sets`; `cache` keeps the talkers' waves read in this chunk."""
    seed = cfg["corruptions"]["seed"]
    wave = read_audio(path)
    noises = {}
    for kind in dict.fromkeys(spec["kind"] for spec in specs):
        rng = np.random.default_rng([seed, index, STREAMS[kind]])
        if kind == "white":
            noises[kind] = white_noise(len(wave), rng)
        else:
            for talker in talkers:
                if talker not in cache:
                    cache[talker] = read_audio(talker)
            try:
                noises[kind] = babble_noise([cache[t] for t in talkers], len(wave), rng)
            except ValueError as err:
                raise CorruptionError(f"{path}: babble of {talkers}: {err}") from err
    out = {}
    for spec in specs:
        try:
            mixed = mix_at_snr(wave, noises[spec["kind"]], spec["level"])
        except ValueError as err:
            raise CorruptionError(f"{path}: {spec['name']}: {err}; drop the clip or the audio corruptions") from err
        out[spec["name"]] = wave_features(mixed, cfg["audio"], f"{path} ({spec['name']})")
        out.update(
            {
                name: vector
                for name, (vector, _) in functionals_pairs(
                    mixed, sets, f"{path} ({spec['name']})", spec["name"]
                ).items()
            }
        )
    return out


def _corrupt_audio_chunk(jobs: list[tuple], cfg: dict, specs: list[dict], sets: list[str] = ()):
    """Worker: (index, path, talker paths, clean frame count) jobs -> (index, {variant (or the functionals of one:
    `functionals_name`): (frames, valid)})."""
    import torch

    torch.set_num_threads(1)
    variants = {spec["name"] for spec in specs}
    cache: dict[str, np.ndarray] = {}  # a talker often speaks in several babbles of a chunk
    results = []
    for index, path, talkers, n_frames in jobs:
        try:
            out = _corrupt_audio(index, path, talkers, cfg, specs, cache, sets)
        except INPUT_ERRORS as err:  # they name the file: the clip's or a talker's
            raise CorruptionError(f"{path}: audio corruption failed: {err}") from err
        for name, frames in out.items():
            if name in variants and len(frames) != n_frames:
                raise CorruptionError(f"{path}: {name} has {len(frames)} frames, the clean features {n_frames}")
        results.append((index, {name: (frames, np.ones(len(frames), bool)) for name, frames in out.items()}))
    return results


def corrupt_audio(
    clips: pd.DataFrame,
    keep: list[int],
    extracted: dict,
    cfg: dict,
    specs: list[dict],
    pool: ProcessPoolExecutor | None = None,
    cache: ExtractionCache | None = None,
    workers: int = 1,
    sets: list[str] = (),
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """{(variant, index): (frames, valid)} for the audio variants among `specs` (and their functionals `sets`, named
    by `functionals_name`), of every clip of `keep` with clean audio features in `extracted` (the first pass, which
    also gives the babble talkers' pool).
    `cache`: as in `extract_all`, per clip (its variants; the key covers its babble talkers' files too)."""
    specs = [spec for spec in specs if spec["modality"] == "audio"]
    if not specs:
        return {}
    with_audio = [i for i in keep if (i, "audio") in extracted]
    talkers: dict[int, list[str]] = {i: [] for i in with_audio}
    if any(spec["kind"] == "babble" for spec in specs):
        by_speaker: dict[str, list[int]] = {}
        for i in with_audio:
            by_speaker.setdefault(str(clips.at[i, "speaker"]), []).append(i)
        n, seed = cfg["corruptions"]["babble_talkers"], cfg["corruptions"]["seed"]
        for i in with_audio:
            chosen = babble_talkers(i, str(clips.at[i, "speaker"]), by_speaker, n, seed)
            talkers[i] = [clips.at[j, "audio_path"] for j in chosen]
    jobs = [(i, clips.at[i, "audio_path"], talkers[i], len(extracted[(i, "audio")][0])) for i in with_audio]
    names = [spec["name"] for spec in specs] + [functionals_name(name, spec["name"]) for spec in specs for name in sets]
    keys = {i: cache.key(("noisy audio", i, n), [path, *paths]) for i, path, paths, n in jobs} if cache else {}
    done = {i: pairs for i, key in keys.items() if (pairs := cache.load(key, names)) is not None}
    todo = [job for job in jobs if job[0] not in done]
    own = pool is None
    pool = worker_pool(workers) if own else pool
    out = {(name, index): value for index, pairs in done.items() for name, value in pairs.items()}
    try:
        for chunk_results in map_chunks(
            _corrupt_audio_chunk, todo, (cfg, specs, list(sets)), pool, "noisy audio", len(done)
        ):
            for index, variants in chunk_results:
                out.update({(name, index): value for name, value in variants.items()})
                if cache:
                    cache.save(keys[index], variants)
    finally:
        if own and pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def variant_sequences(
    specs: list[dict], keep: list[int], clip_ids: list[str], variants: dict, dims: dict[str, int]
) -> dict[str, Sequences]:
    """{variant: Sequences in `keep`'s order} from {(variant, index): (frames, valid)}; zero frames for a clip
    without the modality."""
    out = {}
    for spec in specs:
        dim = dims[spec["modality"]]
        empty = (np.zeros((0, dim), np.float32), np.zeros(0, bool))
        pairs = [variants.get((spec["name"], i), empty) for i in keep]
        out[spec["name"]] = Sequences.from_list(clip_ids, [f for f, _ in pairs], [v for _, v in pairs], dim)
    return out


def split_functionals(
    variants: dict, sets: list[str], keep: list[int], clip_ids: list[str], specs: list[dict]
) -> tuple[dict, dict[str, Sequences]]:
    """Take the functionals out of the extracted {(name, index): (frames, valid)}: (the rest, {functionals_file:
    Sequences in `keep`'s order}) for every set, of the clean audio and of each audio variant of `specs`."""
    variants = dict(variants)
    out = {}
    for variant in [None] + [spec["name"] for spec in specs if spec["modality"] == "audio"]:
        for name in sets:
            key = functionals_name(name, variant)
            pairs = {(key, i): variants.pop((key, i)) for i in keep if (key, i) in variants}
            out[functionals_file(name, variant)] = variant_sequences(
                [{"name": key, "modality": "functionals"}],
                keep,
                clip_ids,
                pairs,
                {"functionals": FUNCTIONAL_SETS[name]},
            )[key]
    return variants, out


def found_modalities(corpus: Corpus, clips: pd.DataFrame) -> tuple[tuple[str, ...], list[str]]:
    """The corpus's modalities that at least one clip has a file for, and one line per modality that some clips (or
    all) lack, naming where the adapter looked (`clips.attrs["sources"]`, where it says)."""
    found, lines = [], []
    for m in corpus.modalities:
        has = clips[f"{m}_path"].map(lambda p: isinstance(p, str))
        where = clips.attrs.get("sources", {}).get(m, f"the {m} files of the {corpus.name} listing")
        if not has.any():
            others = ", ".join(n for n in corpus.modalities if n != m)
            lines.append(
                f"{corpus.name}: {m}: not found for any of the {len(clips)} clips (looked for {where}); the "
                f"store holds {others} only, and the runs that need {m} are skipped"
            )
        elif not has.all():
            lines.append(
                f"{corpus.name}: {m}: {int(has.sum())} of {len(clips)} clips have a file, "
                f"{int((~has).sum())} have none (looked for {where}); those clips lack {m}"
            )
        if has.any():
            found.append(m)
    if not found:
        raise CorpusError(f"data.corpus {corpus.name}: no clip has a file of any modality ({'; '.join(lines)})")
    return tuple(found), lines


def missing_classes_entry(missing: dict[int, dict[str, list]]) -> dict[str, dict[str, list]]:
    """`check_classes`'s record as the manifest keeps it (JSON: fold numbers as strings)."""
    return {str(fold): roles for fold, roles in sorted(missing.items())}


def wanted_functionals(params: dict) -> list[str]:
    """The openSMILE functionals sets to extract: the prepare stage's `functionals` list (the sets the study's runs
    read, `mer_core.config.needed_functionals`); none when `params` has no such list."""
    return list(params.get("functionals", []))


def wants_corruptions(params: dict) -> bool:
    """Whether the robustness grid asks for the signal corruptions: the prepare stage's `corruptions` flag, or
    `robustness.signal` of whole params."""
    return bool(params["corruptions"] if "corruptions" in params else params["robustness"]["signal"])


def prepare(params: dict, jobs: int = 1) -> FeatureStore:
    """Build the feature store of `params['data']['corpus']` with `jobs` worker processes and return it (see the
    module docstring). `params`: the prepare stage's resolved params (data, features, folds, corruptions), or whole
    validated params."""
    corpus = CORPORA[params["data"]["corpus"]]
    if corpus.kind == "package":
        write_store(store_path(params), *prepare_package(corpus, params))
    else:
        meta, splits, sequences, manifest, skipped, corrupted, functionals = prepare_media(corpus, params, jobs)
        write_store(store_path(params), meta, splits, sequences, manifest, skipped, corrupted, functionals)
        remove_cache(cache_path(params))  # the store is complete: the resumable work is no longer needed
        report_skipped(skipped, store_path(params) / "skipped.csv")
    return read_store(store_path(params))


def skipped_table(clips: pd.DataFrame, modalities: tuple[str, ...], errors: list[tuple], on_error: str):
    """The clips kept (indices of `clips`) and skipped.csv (`SKIPPED_COLUMNS`): a row per (clip, modality) that
    the corpus lists without a file or whose file failed (`errors`: (index, modality, path, message)); the clip
    is dropped with `skip_clip` or when it is left with no modality (see module docstring)."""
    problems: dict[int, dict[str, tuple[str, str]]] = {}
    for i in clips.index:
        for m in modalities:
            if not isinstance(clips.at[i, f"{m}_path"], str):
                problems.setdefault(i, {})[m] = ("", f"no {m} file")
    for i, m, path, message in errors:
        problems.setdefault(i, {})[m] = (path, message.removeprefix(f"{path}: "))
    rows, dropped = [], set()
    for i in sorted(problems):
        action = CLIP_DROPPED if on_error == "skip_clip" or len(problems[i]) == len(modalities) else MODALITY_DROPPED
        if action == CLIP_DROPPED:
            dropped.add(i)
        rows += [(clips.at[i, "clip_id"], m, *problems[i][m], action) for m in modalities if m in problems[i]]
    return [i for i in clips.index if i not in dropped], pd.DataFrame(rows, columns=SKIPPED_COLUMNS)


def report_skipped(skipped: pd.DataFrame, where: Path) -> None:
    """Tell a summary of skipped.csv (nothing when it is empty) on stderr, which from inside a papermill-executed
    notebook reaches both the `dvc repro` console and the notebook (`mer_core.runtime.tell`)."""
    if skipped.empty:
        return
    kept_without = skipped[skipped["action"] == MODALITY_DROPPED].groupby("modality", sort=False).size()
    lines = [
        f"prepare: {len(skipped)} problems with the corpus's files, listed in {where}: "
        f"{skipped.loc[skipped['action'] == CLIP_DROPPED, 'clip_id'].nunique()} clips dropped"
        + "".join(f", {n} clips kept without {m}" for m, n in kept_without.items())
    ]
    lines += [
        f"  {row.clip_id} {row.modality}: {row.action} ({row.reason})"
        for row in skipped.head(REPORTED_ROWS).itertuples()
    ]
    if len(skipped) > REPORTED_ROWS:
        lines.append(f"  ... {len(skipped) - REPORTED_ROWS} more rows in {where}")
    tell("\n".join(lines))


def manifest_of(
    corpus: Corpus,
    root: str,
    meta: pd.DataFrame,
    dims: dict,
    frame_rates: dict,
    features: dict,
    skipped: int,
    classes: tuple[str, ...] | None = None,
    attributes: tuple[str, ...] | None = None,
) -> dict:
    """The manifest entries every store has (write_store adds the files' hashes). `classes` default to the
    corpus's; `attributes` (the regression targets, meta columns, in order) to the dimensional attributes
    (`corpora.base.ATTRIBUTES`) that meta holds."""
    return {
        "corpus": corpus.name,
        "description": corpus.description,
        "root": root,
        "modalities": [m for m in corpus.modalities if m in dims],  # those the store holds
        "classes": list(corpus.classes if classes is None else classes),
        "dims": dims,
        "frame_rates": frame_rates,
        "features": features,
        "counts": {"clips": len(meta), "speakers": int(meta["speaker"].nunique()), "skipped": skipped},
        "attributes": [a for a in ATTRIBUTES if a in meta] if attributes is None else list(attributes),
    }


def prepare_package(corpus: Corpus, params: dict):
    """`write_store` arguments for a feature package: its features and folds as they are (options: the params
    section `data.<corpus name>`, where there is one)."""
    root = params["data"]["root"]
    package = corpus.read_package(root, **params["data"].get(corpus.name, {}))
    missing = check_classes(package.meta, package.splits)
    manifest = manifest_of(
        corpus,
        root,
        package.meta,
        {m: s.dim for m, s in package.sequences.items()},
        package.frame_rates,
        package.features,
        skipped=0,
        classes=package.classes,
        attributes=package.attributes,
    )
    manifest.update(
        folds=package.folds,
        corruptions=[],
        functionals={},
        missing_classes=missing_classes_entry(missing),
        unused_params=["features", "folds", "data.on_error", "features.corruptions"],
    )
    if package.labels:
        manifest["labels"] = package.labels
    return package.meta, package.splits, package.sequences, manifest


def prepare_media(corpus: Corpus, params: dict, jobs: int = 1):
    """`write_store` arguments for a media corpus: the extracted features of the modalities found, folds drawn by
    speaker, corruptions (only when the robustness grid tests them) and functionals (those the runs read)."""
    data_cfg, feat_cfg = params["data"], params["features"]
    clips = corpus.clips(data_cfg)
    notes = list(clips.attrs.get("notes", []))
    for note in notes:
        tell(f"{corpus.name}: {note}")
    modalities, absent = found_modalities(corpus, clips)
    for line in absent:
        tell(line)
    notes += absent
    specs = corruption_specs(feat_cfg, modalities) if wants_corruptions(params) else []
    sets = wanted_functionals(params) if "audio" in modalities else []
    cache = ExtractionCache(cache_path(params), settings_digest(corpus.name, {**feat_cfg, "functionals": sets}))
    clips = clips.reset_index(drop=True)
    pool = worker_pool(jobs)  # one set of workers for both passes
    try:
        # first pass: clean features, and the visual variants and audio functionals from the same read of each file
        extracted, errors, variants = extract_all(
            clips, modalities, feat_cfg, data_cfg["on_error"], specs, pool, cache, sets=sets
        )
        keep, skipped = skipped_table(clips, modalities, errors, data_cfg["on_error"])
        meta = clips.loc[keep].drop(columns=[f"{m}_path" for m in corpus.modalities]).reset_index(drop=True)
        for m in modalities:
            meta[f"has_{m}"] = [(i, m) in extracted for i in keep]
        dims = {"audio": audio_dim(feat_cfg["audio"]), "visual": visual_dim(feat_cfg["visual"])}
        sequences = variant_sequences(
            [{"name": m, "modality": m} for m in modalities],
            keep,
            list(meta["clip_id"]),
            {(m, i): fv for (i, m), fv in extracted.items()},
            dims,
        )
        splits = draw_folds(meta, params["folds"], corpus.name, corpus.protocol)  # before the second pass: fails fast
        # second pass: noisy audio (babble mixes the readable clips of other speakers), and its functionals
        variants.update(corrupt_audio(clips, keep, extracted, feat_cfg, specs, pool, cache, sets=sets))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    variants, functionals = split_functionals(variants, sets, keep, list(meta["clip_id"]), specs)
    corrupted = variant_sequences(specs, keep, list(meta["clip_id"]), variants, dims)
    frame_rates = {
        "audio": audio_frame_rate(feat_cfg["audio"]),
        "visual": feat_cfg["visual"]["fps"] / feat_cfg["visual"]["rate_reduction"],
    }
    manifest = manifest_of(
        corpus,
        data_cfg["root"],
        meta,
        {m: dims[m] for m in modalities},
        {m: frame_rates[m] for m in modalities},
        {m: feat_cfg[m] for m in modalities},
        skipped=len(clips) - len(keep),
        classes=corpus.class_names(data_cfg),
    )
    manifest["counts"]["modalities_dropped"] = {
        m: int((skipped["modality"].eq(m) & skipped["action"].eq(MODALITY_DROPPED)).sum()) for m in modalities
    }
    manifest["corruptions"] = specs
    manifest["functionals"] = {name: FUNCTIONAL_SETS[name] for name in sets}
    manifest["missing_classes"] = missing_classes_entry(check_classes(meta, splits))
    if notes:
        manifest["notes"] = notes
    return meta, splits, sequences, manifest, skipped, corrupted, functionals
