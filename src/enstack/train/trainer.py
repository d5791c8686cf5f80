"""`enstack train`: fine-tune one base model, resumable exactly from any checkpoint.

The loop in `Trainer.run` reads top to bottom like nanoGPT's: for each epoch, a seeded,
length-grouped batch order; for each optimizer step, forward/backward over `grad_accum_steps`
micro-batches, clip, step; a checkpoint every `save_steps` steps and at every epoch end, after
evaluation. All state that decides the future is in `TrainState` plus the tensors.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow.parquet as pq
import torch

from enstack import log
from enstack.ckpt.layout import (
    Checkpoint,
    newest_valid,
    remove_unfinished,
    verify,
)
from enstack.ckpt.state import TrainingParts, capture, restore
from enstack.ckpt.writer import CheckpointWriter
from enstack.config import Config, ModelConfig, changed_keys
from enstack.data.prepare import prepare
from enstack.data.record import TrainingData, read_prepared
from enstack.device import amp_mode, autocast, pick_device, use_deterministic_kernels
from enstack.encode import EncodedSplit, ModelInputs, encode_splits
from enstack.errors import UserError
from enstack.fsutil import ProcessLock, sha256_json
from enstack.models.classifier import Classifier
from enstack.models.loading import load_base, new_classifier, write_base
from enstack.progress import progress_bar
from enstack.registries.families import GRAPH_ENCODER_TYPES
from enstack.run_layout import staging_path
from enstack.train.batching import rank_batches
from enstack.train.clock import PhaseClock
from enstack.train.distributed import Dist, process_group, rank_seed
from enstack.train.export import export_model
from enstack.train.logbook import Logbook
from enstack.train.optim import make_optimizer, make_scheduler
from enstack.train.pairwise import PairRows, pair_batches, pair_margin_loss
from enstack.train.records import TrainResult, TrainState
from enstack.train.signals import Interrupted, StopSignals
from enstack.train.trajectory import as_checkpoint_trained, run_fingerprint, trajectory_settings
from enstack.train.validation import evaluate

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel
    from transformers import PretrainedConfig

LOG = log.get(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; nothing after the last good checkpoint is saved."""


def model_seed(seed: int, name: str) -> int:
    """Each base model's own seed (init, dropout, data order), stable across runs.

    Two models of one architecture trained from scratch with one seed would be identical
    twins, and an ensemble of twins learns nothing from the second.
    """
    return int(sha256_json({"seed": seed, "model": name})[:8], 16)


def train_model(
    config: Config,
    name: str,
    resume: str = "auto",
    progress: bool | None = None,
    force_resume: bool = False,
    manifest: TrainingData | None = None,
) -> TrainResult:
    """Train one model; `manifest`: prepared data the caller already checked (pipeline).
    Under torchrun, the process group this joins is left when it returns or fails."""
    model_cfg = config.model(name)  # a bad name is reported before any work
    with process_group(pick_device(config.training.device).type == "cuda") as ranks:
        return _train_in_group(config, model_cfg, ranks, resume, progress, force_resume, manifest)


def _train_in_group(
    config: Config,
    model_cfg: ModelConfig,
    ranks: Dist,
    resume: str,
    progress: bool | None,
    force_resume: bool,
    manifest: TrainingData | None,
) -> TrainResult:
    if ranks.main and manifest is None:  # one writer; the other ranks read what it prepared
        manifest = prepare(config, progress).manifest
    ranks.barrier()
    if manifest is None:
        manifest = read_prepared(config.layout.data)
    trainer = Trainer(config, model_cfg, manifest, progress if ranks.main else False, ranks)
    # one writer per model: a second `enstack train` would sweep the first's save in flight
    with trainer.lock() if ranks.main else contextlib.nullcontext():
        checkpoint = trainer.select_checkpoint(resume)
        return trainer.run(checkpoint, force_resume)


@dataclass(frozen=True)
class Session:
    """What `Trainer.setup` builds for one run, complete from the moment it exists: the
    encoded data, the model and what steps it, and where checkpoints go."""

    train_split: EncodedSplit
    val_split: EncodedSplit
    parts: TrainingParts  # the model, its optimizer, schedule and scaler
    forward: torch.nn.Module  # the model, or its DDP wrapper
    loss_fn: torch.nn.Module
    pair_rows: PairRows | None  # training.pairwise: each row's pair
    writer: CheckpointWriter

    @property
    def model(self) -> torch.nn.Module:
        return self.parts.model


class Trainer:
    """One model's training run. Its lifecycle, in `run`: `setup` (the data, the parts, a
    fresh state), `resume` (a checkpoint's state into them), `train` (the loop, with `save`
    at every checkpoint), `close` (the final export and the result)."""

    def __init__(
        self,
        config: Config,
        model_cfg: ModelConfig,
        manifest: TrainingData,
        progress: bool | None,
        ranks: Dist | None = None,
    ) -> None:
        self.ranks = ranks or Dist()
        self.config = config
        self.tc = config.training
        self.model_cfg = model_cfg
        self.manifest = manifest
        self.progress = progress
        self.paths = config.layout.model(model_cfg.name)
        self.labels = manifest.labels
        self.device = pick_device(self.tc.device)
        if self.device.type == "cuda" and self.ranks.active:
            self.device = torch.device("cuda", self.ranks.local_rank)
        self.amp = amp_mode(self.tc.amp, self.device)
        if self.tc.deterministic:
            use_deterministic_kernels(self.device)
        self.seed = model_seed(config.seed, model_cfg.name)
        # GraphCodeBERT's data-flow graph: this many node positions after the code, or none
        self.dfg_length = self.tc.dfg_length if model_cfg.uses_dfg else 0
        if self.tc.num_threads:
            torch.set_num_threads(self.tc.num_threads)
        self.staging = (
            staging_path(self.tc.staging_dir, config.run_dir, model_cfg.name)
            if self.tc.staging_dir
            else None
        )
        self.state = TrainState()
        self.clock = PhaseClock(self.device)
        # opened by `train`; under torchrun rank 0 keeps the log for all
        self.log = Logbook(self.paths.root) if self.ranks.main else None
        self._session: Session | None = None  # `setup`'s, for this run
        # the steps trained since their losses were last read back (see `_fold_losses`)
        self._pending_losses: list[tuple[list[torch.Tensor], list[int]]] = []

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("Trainer.session is built by Trainer.run (setup) first")
        return self._session

    def _classifier(self) -> Classifier:
        """The session's model as this trainer builds it (`_new_model`: a classifier)."""
        return cast(Classifier, self.session.model)

    # --- which checkpoint -----------------------------------------------------------------

    def lock(self) -> ProcessLock:
        """One writer per model: a second process training it would sweep this one's save
        in flight."""
        root = self.paths.root
        return ProcessLock(root / ".lock", f"model {self.model_cfg.name!r} ({root})")

    def select_checkpoint(self, resume: str) -> Checkpoint | None:
        """Rank 0 chooses (and tidies); every rank then loads the same checkpoint."""
        chosen = self._choose_checkpoint(resume) if self.ranks.main else None
        path = self.ranks.broadcast(str(chosen.path) if chosen else None)
        if self.ranks.main or path is None:
            return chosen
        return verify(Path(path))

    def _choose_checkpoint(self, resume: str) -> Checkpoint | None:
        ckpt_dir = self.paths.checkpoints
        for directory in (ckpt_dir, *([self.staging] if self.staging else [])):
            remove_unfinished(directory)
        if resume == "never":
            # the old run's logs go with its checkpoints: TensorBoard would drop the new
            # scalars as out of order, and metrics.jsonl would mix two runs
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            root = self.paths.root
            for path in (ckpt_dir, root / "tb", root / "metrics.jsonl", self.staging):
                if path is not None:
                    _set_aside(path, stamp)
            return None
        if resume != "auto":
            return verify(Path(resume))
        found, problems = newest_valid([ckpt_dir, *([self.staging] if self.staging else [])])
        for problem in problems:
            LOG.warning(f"skipping checkpoint: {problem}")
        return found

    # --- the run ----------------------------------------------------------------------------

    def run(self, checkpoint: Checkpoint | None, force_resume: bool) -> TrainResult:
        resumed_from = checkpoint.path if checkpoint else None
        # settings added to enstack since the checkpoint was written, left unset by the user,
        # at the value it trained with (a run from before windows goes on truncated)
        self.config = as_checkpoint_trained(self.config, checkpoint.state if checkpoint else None)
        self.tc = self.config.training
        self._session = self.setup(fresh=checkpoint is None)
        if checkpoint is not None:
            self.state = self.resume(checkpoint, self.state, force_resume)
        if self.state.finished:
            if self.ranks.main and not (self.paths.final / "model.safetensors").is_file():
                self._export(self.paths.final)
            print(f"{self.model_cfg.name}: already trained ({resumed_from or ''})")
            return TrainResult(self.paths, self.state, resumed_from, True)
        self.train()
        return self.close(resumed_from)

    # --- setup, training, teardown ------------------------------------------------------------

    def setup(self, fresh: bool) -> Session:
        """The encoded data, the model and its optimizer, schedule and scaler, and a fresh
        state (`fresh`: no checkpoint follows, so pretrained weights are loaded)."""
        with self.ranks.main_first():  # rank 0 writes base/ and the token cache
            hf_config, _, splits = self._base_and_tokens(self.config.layout.data)
        if self.dfg_length and hf_config.model_type not in GRAPH_ENCODER_TYPES:
            raise UserError(
                f"models: {self.model_cfg.name} reads a data-flow graph (dfg), whose input "
                f"needs a RoBERTa-type encoder; its model type is {hf_config.model_type!r}: "
                "set dfg: false for it"
            )
        train_split = self._training_rows(splits["train"])
        pair_rows = self._pair_rows(train_split) if self.tc.pairwise else None
        n_batches = len(self._epoch_plan(0, train_split, pair_rows))
        steps_per_epoch = math.ceil(n_batches / self.tc.grad_accum_steps)
        parts = self._build_parts(hf_config, fresh, steps_per_epoch)
        self.state = TrainState(total_batches=n_batches, steps_per_epoch=steps_per_epoch)
        return Session(
            train_split=train_split,
            val_split=splits["val"],
            parts=parts,
            forward=self._wrap_ddp(parts.model),
            loss_fn=self._loss_function(train_split),
            pair_rows=pair_rows,
            writer=CheckpointWriter(self.paths.checkpoints, self.tc.keep_checkpoints, self.staging),
        )

    def _training_rows(self, split: EncodedSplit) -> EncodedSplit:
        """The train split as the loss reads it (a student swaps its labels for targets)."""
        return split

    def _loss_function(self, train_split: EncodedSplit) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss(weight=self._class_weights(train_split))

    def _build_parts(
        self, hf_config: PretrainedConfig, fresh: bool, steps_per_epoch: int
    ) -> TrainingParts:
        """Initial weights from the model seed (the same on every rank; pretrained ones only
        for a fresh start: a checkpoint's replace them), then each rank's dropout stream."""
        _seed_everything(self.seed)
        model = self._new_model(hf_config, fresh).to(self.device)
        if self.ranks.active:
            torch.manual_seed(rank_seed(self.seed, self.ranks.rank))
        optimizer = make_optimizer(model, self.tc)
        scheduler = make_scheduler(optimizer, self.tc, steps_per_epoch * self.tc.epochs)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        return TrainingParts(model, optimizer, scheduler, scaler)

    def _new_model(self, hf_config: PretrainedConfig, fresh: bool) -> torch.nn.Module:
        """The model, its weights drawn from the seed just set (or the pretrained ones)."""
        return new_classifier(hf_config, self.model_cfg.pretrained if fresh else None)

    def _wrap_ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.ranks.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def train(self) -> None:
        """The loop from the state's (epoch, step) to the last epoch or a stop."""
        tc, n_batches, writer = self.tc, self.state.total_batches, self.session.writer
        if self.log:
            self.log.open(self.state.global_step)
        self._say(
            f"{self.model_cfg.name}: {len(self.session.train_split)} train rows"
            f"{self._windows_note()}, "
            f"{n_batches} batches "
            f"per epoch; effective batch {tc.batch_size} per rank x {self.ranks.world} "
            f"rank{'s' if self.ranks.world > 1 else ''} x {tc.grad_accum_steps} accumulation "
            f"= {tc.batch_size * self.ranks.world * tc.grad_accum_steps}; {tc.epochs} epochs, "
            f"device {self.device}, amp {self.amp}"
        )
        try:
            with StopSignals() as signals:
                self._loop(signals)
            writer.wait()
        finally:
            with contextlib.suppress(UserError):
                writer.wait()  # a save in flight finishes even when the loop failed
            if self.log:
                self.log.close()

    def close(self, resumed_from: Path | None) -> TrainResult:
        """The final export, once every rank is done; the run's result."""
        self._say(f"{self.model_cfg.name}: training time by phase: {self.clock.summary()}")
        if self.ranks.main:
            self._export(self.paths.final)
        self.ranks.barrier()
        return TrainResult(self.paths, self.state, resumed_from, False, dict(self.clock.totals))

    def _loop(self, signals: StopSignals) -> None:
        tc, state = self.tc, self.state
        session = self.session
        while state.epoch < tc.epochs and not state.finished:
            batches = self._epoch_plan(state.epoch, session.train_split, session.pair_rows)
            steps = [
                batches[i : i + tc.grad_accum_steps]
                for i in range(0, len(batches), tc.grad_accum_steps)
            ]
            bar = progress_bar(
                enabled=self.progress,
                total=len(batches),
                initial=min(state.step * tc.grad_accum_steps, len(batches)),
                desc=f"{self.model_cfg.name} epoch {state.epoch + 1}/{tc.epochs}",
                unit="batch",
                dynamic_ncols=True,
                file=sys.stderr,
            )
            session.model.train()
            while state.step < len(steps):
                group = steps[state.step]
                # the step's losses stay on the device: reading them back every step would
                # make the CPU wait for the GPU; they are read in one go at log, save and
                # epoch end (`_fold_losses`), with the same arithmetic as one at a time
                self._pending_losses.append((self._train_step(group), [len(b) for b in group]))
                state.step += 1
                state.global_step += 1
                bar.update(len(group))
                if state.global_step % tc.log_steps == 0:
                    self._log_train(bar)
                if self.ranks.any(signals.stop):
                    bar.close()
                    self._save(wait=True)
                    raise Interrupted(self._where())
                if (
                    tc.save_steps
                    and state.global_step % tc.save_steps == 0
                    and state.step < len(steps)
                ):
                    self._save()
            bar.close()
            improved = self._end_epoch()
            stop = self.ranks.any(signals.stop)
            self._save(wait=state.finished or stop, is_best=improved)
            if stop and not state.finished:
                raise Interrupted(self._where())

    def _train_step(self, group: list[np.ndarray]) -> list[torch.Tensor]:
        """One optimizer step over the group's micro-batches; their losses, on the device."""
        rows = sum(len(b) for b in group)
        losses = []
        clock, parts = self.clock, self.session.parts
        for i, batch in enumerate(group):
            clock.start()
            inputs, targets = self._batch(batch, i)
            clock.lap("data")
            # under DDP, gradients are averaged across ranks only on the step's last batch
            last = i == len(group) - 1
            sync = (
                contextlib.nullcontext()
                if last or not self.ranks.active
                else cast("DistributedDataParallel", self.session.forward).no_sync()
            )
            with sync:
                with autocast(self.amp, self.device):
                    loss = self._loss(inputs, targets, batch)
                clock.lap("forward")
                # weight each micro-batch by its rows, so a short last group is not
                # over-weighted
                scaled = loss * (len(batch) / rows)
                parts.scaler.scale(scaled).backward()
            losses.append(loss.detach())
            clock.lap("backward")
        parts.scaler.unscale_(parts.optimizer)  # the scaler is a no-op unless fp16
        if self.tc.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), self.tc.max_grad_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
        clock.lap("optimizer")
        return losses

    def _batch(self, rows: np.ndarray, micro: int) -> tuple[ModelInputs, torch.Tensor]:
        """Micro-batch `micro` of this step: its inputs and targets, on the device."""
        return _to_device(self.session.train_split.collate(rows), self.device)

    def _loss(self, inputs: ModelInputs, targets: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """The micro-batch's mean loss (under autocast); with training.pairwise, plus the
        weighted margin ranking term over its fix pairs."""
        session = self.session
        logits = session.forward(*inputs).float()
        loss = session.loss_fn(logits, targets)
        if session.pair_rows is None:
            return loss
        benign = self.config.data.benign_id
        assert benign is not None, "checked by the config"
        term = pair_margin_loss(
            logits, torch.as_tensor(rows), session.pair_rows, benign, self.tc.pair_margin
        )
        return loss + self.tc.pair_weight * term

    def _pair_rows(self, split: EncodedSplit) -> PairRows:
        """Each train row's pair, from the prepared split's pair column."""
        path = self.config.layout.split("train")
        table = pq.read_table(path, columns=["pair", "label"])
        pairs, labels = table.column("pair").to_pylist(), table.column("label").to_pylist()
        benign = self.config.data.benign_id
        assert benign is not None, "checked by the config"
        index = PairRows.of(split.owner, len(split), pairs, labels, benign)
        self._say(
            f"{self.model_cfg.name}: pairwise term over {index.pairs} fix pairs (margin "
            f"{self.tc.pair_margin}, weight {self.tc.pair_weight}); batches keep pairs together"
        )
        return index

    def _train_scalars(self) -> dict[str, float]:
        """What a train log line shows beside the loss and learning rate (none here)."""
        return {}

    def _fold_losses(self) -> float:
        """Add the steps trained since the last fold to the epoch's loss; the running mean.

        One device read for all of them. Each step's loss is its micro-batches' losses
        weighted by rows, averaged over ranks, exactly as if read after every step.
        """
        state, pending = self.state, self._pending_losses
        if pending:
            values = torch.stack([t for losses, _ in pending for t in losses]).tolist()
            totals, at = [], 0
            for _, sizes in pending:
                rows, total = sum(sizes), 0.0
                for size in sizes:
                    total += values[at] * size / rows
                    at += 1
                totals.append(total)
            first_step = state.global_step - len(pending) + 1
            pending.clear()
            for offset, loss in enumerate(self.ranks.mean(totals)):
                if not math.isfinite(loss):
                    raise TrainingDiverged(self._diverged(loss, first_step + offset))
                state.loss_sum += loss
                state.loss_count += 1
        return state.loss_sum / max(state.loss_count, 1)

    def _log_train(self, bar: Any) -> None:  # a progress bar (tqdm's)
        """The running loss, the learning rate and `_train_scalars`: on the bar, in the log."""
        state = self.state
        running = self._fold_losses()
        lr = self.session.parts.scheduler.get_last_lr()[0]
        extra = self._train_scalars()
        shown = "".join(f", {name}={value:.0f}" for name, value in extra.items())
        bar.set_postfix_str(f"loss={running:.4f}, lr={lr:.1e}{shown}", refresh=False)
        if self.log:
            self.log.write(
                {
                    "event": "train",
                    "epoch": state.epoch,
                    "step": state.step,
                    "global_step": state.global_step,
                    "loss": round(running, 6),
                    "lr": lr,
                    **{name: round(value, 1) for name, value in extra.items()},
                },
                {"loss": running, "lr": lr, **extra},
                "train",
            )

    def _validate(self) -> dict:
        """The val split's metrics (every rank gets the same)."""
        return evaluate(
            self._classifier(),
            self.session.val_split,
            len(self.labels),
            self.tc.batch_size * 2,
            self.device,
            self.amp,
            self.ranks,
            benign_id=self.config.data.benign_id,
        )

    def _selection_score(self, metrics: dict) -> float:
        """What the best epoch maximises (kept in the state as `best_f1`): val weighted F1."""
        return metrics["f1"]

    def _epoch_report(self, metrics: dict, improved: bool) -> None:
        """The epoch's line, and a warning when it has not learned."""
        state = self.state
        self._say(
            f"{self.model_cfg.name} epoch {state.epoch + 1}: val loss {metrics['loss']:.4f}, "
            f"accuracy {metrics['accuracy']:.4f}, weighted F1 {metrics['f1']:.4f}, macro F1 "
            f"{metrics['macro_f1']:.4f}{' (best)' if improved else ''}"
        )
        # said for the last epoch only: an early epoch often answers one class, then learns
        last = state.epoch + 1 == self.tc.epochs
        one_class = metrics.get("predicted_classes") == 1
        if last and one_class and len(self.session.val_split) > 1:
            self._warn(
                f"{self.model_cfg.name} epoch {state.epoch + 1} predicts one class for "
                "every val row: its scores are that one class's, not learning (more epochs, "
                "another learning rate, or more data)"
            )

    def _end_epoch(self) -> bool:
        """Evaluate, export a new best, move to the next epoch; whether val improved."""
        self._fold_losses()
        state, tc = self.state, self.tc
        metrics = self._validate()
        state.last_eval = metrics
        score = self._selection_score(metrics)
        improved = state.best_f1 is None or score > state.best_f1
        self._epoch_report(metrics, improved)
        if self.log:
            self.log.write(
                {
                    "event": "eval",
                    "split": "val",
                    "epoch": state.epoch,
                    "global_step": state.global_step,
                    **metrics,
                },
                {k: v for k, v in metrics.items() if not math.isnan(v)},
                "val",
            )
        if improved:
            state.best_f1, state.best_epoch = score, state.epoch
            state.epochs_without_improvement = 0
            if self.ranks.main:
                self._export(self.paths.best)
        else:
            state.epochs_without_improvement += 1
        state.epoch += 1
        state.step = 0
        state.loss_sum, state.loss_count = 0.0, 0
        patience = tc.early_stopping_patience
        stop_early = bool(patience) and state.epochs_without_improvement >= patience
        if self.ranks.broadcast(stop_early):  # rank 0 decides, every rank follows
            state.finished = state.stopped_early = True
            self._say(f"{self.model_cfg.name}: early stop, no val gain in {patience} epochs")
        if state.epoch >= tc.epochs:
            state.finished = True
        return improved

    # --- checkpoints ----------------------------------------------------------------------

    def _save(self, wait: bool = False, is_best: bool = False) -> None:
        """Checkpoint now (`is_best`: an epoch end that set a new best); collective."""
        self._fold_losses()  # the loss so far is part of the state
        state = self.state
        settings = trajectory_settings(self.config, self.model_cfg, self.ranks.world)
        scalars = {
            "model": self.model_cfg.name,
            **asdict(state),
            "is_best": is_best,
            "grad_accum_steps": self.tc.grad_accum_steps,
            "seed": self.seed,
            "config_hash": sha256_json(settings),
            # the settings themselves, so that a refused resume can name what changed
            "config": settings,
            "data_hash": self.manifest.data_fingerprint,
        }
        self.clock.start()
        parts = self.session.parts
        scalars, extra_rng = capture(parts, scalars, self.ranks)
        if self.ranks.main:
            self.session.writer.save(
                state.global_step,
                parts.model,
                parts.optimizer,
                scalars,
                wait=wait,
                extra_rng=extra_rng,
            )
        if wait:
            self.ranks.barrier()  # nobody leaves before the checkpoint is on disk
        self.clock.lap("checkpoint")

    def resume(self, ckpt: Checkpoint, fresh: TrainState, force: bool) -> TrainState:
        """The checkpoint's tensors into the session's parts; its state, checked against
        `fresh` (what this data and config give)."""
        saved = ckpt.state
        self._check_compatible(ckpt, force)
        for warning in restore(ckpt, self.session.parts, self.ranks):
            self._warn(warning)
        state = TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})
        state.total_batches = _derived(saved, "total_batches", fresh.total_batches, ckpt.path)
        state.steps_per_epoch = _derived(saved, "steps_per_epoch", fresh.steps_per_epoch, ckpt.path)
        if force and state.finished and not state.stopped_early and state.epoch < self.tc.epochs:
            state.finished = False  # more epochs asked for: go on from this state
            self._say(
                f"{self.model_cfg.name}: training longer, from the end of epoch {state.epoch} to "
                f"{self.tc.epochs} epochs under the new learning-rate schedule (forced: not the "
                "run a fresh start with these settings would give)"
            )
        if not state.finished:
            left = max(state.total_batches - state.step * self.tc.grad_accum_steps, 0)
            self._say(
                f"resuming {self.model_cfg.name} from {ckpt.path}: epoch "
                f"{state.epoch + 1}/{self.tc.epochs}, step {state.step}, global step "
                f"{state.global_step}; {left} of {state.total_batches} batches left in this epoch"
            )
        return state

    def _check_compatible(self, ckpt: Checkpoint, force: bool) -> None:
        saved = ckpt.state
        current_config = run_fingerprint(self.config, self.model_cfg, self.ranks.world)
        checks = (
            ("config_hash", current_config, "config"),
            ("data_hash", self.manifest.data_fingerprint, "prepared data"),
        )
        for key, current, what in checks:
            if key in saved and saved[key] != current:
                changed = self._changed_settings(saved) if key == "config_hash" else []
                names = f" (changed: {', '.join(changed[:6])})" if changed else ""
                longer = (
                    " (to train longer from this checkpoint, --force-resume: it goes on under "
                    "the new schedule, which is not the run a fresh start would give)"
                    if changed == ["training.epochs"]
                    else ""
                )
                message = (
                    f"{ckpt.path} was written for a different {what}{names}; resuming would "
                    "not be exact. Use --resume never to start over (old checkpoints are "
                    f"kept aside), or --force-resume to continue anyway{longer}"
                )
                if not force:
                    raise UserError(message)
                LOG.warning(f"{message} (forced)")

    def _changed_settings(self, saved: dict) -> list[str]:
        """The settings that differ from the checkpoint's, as `--set` spells them (the model's
        under models.N); none for checkpoints that predate recording their settings."""
        if not isinstance(saved.get("config"), dict):
            return []
        current = trajectory_settings(self.config, self.model_cfg, self.ranks.world)
        index = [m.name for m in self.config.models].index(self.model_cfg.name)
        return [
            name.replace("model.", f"models.{index}.", 1) if name.startswith("model.") else name
            for name in changed_keys(saved["config"], current)
        ]

    def _epoch_plan(
        self, epoch: int, split: EncodedSplit, pair_rows: PairRows | None
    ) -> list[np.ndarray]:
        """This rank's batches for `epoch` (a pure function of the seed and the epoch)."""
        if pair_rows is not None:
            return pair_batches(
                split.lengths,
                pair_rows.unit,
                self.tc.batch_size,
                self.seed,
                epoch,
                self.ranks.rank,
                self.ranks.world,
            )
        return rank_batches(
            split.lengths,
            self.tc.batch_size,
            self.seed,
            epoch,
            self.ranks.rank,
            self.ranks.world,
        )

    def _base_and_tokens(
        self, data_dir: Path
    ) -> tuple[PretrainedConfig, Any, dict[str, EncodedSplit]]:
        tc = self.tc
        train_codes = pq.read_table(data_dir / "train.parquet", columns=["code"]).column("code")
        write_base(
            self.paths.base,
            self.model_cfg,
            self.labels,
            tc.max_length,
            (c.as_py() for c in train_codes),
        )
        hf_config, tokenizer = load_base(self.paths.base)
        splits = encode_splits(
            data_dir,
            self.manifest,
            self.paths.base,
            tokenizer,
            self.model_cfg.family,
            tc.max_length,
            self.config.layout.token_cache,
            self.progress,
            dfg_length=self.dfg_length,
            long_functions=tc.long_functions,
            benign_id=self.config.data.benign_id,
        )
        return hf_config, tokenizer, splits

    def _windows_note(self) -> str:
        split = self.session.train_split
        functions = split.functions
        if functions == len(split):
            return ""  # one row per function: nothing was read in windows
        return f" (windows of {functions} functions: training.long_functions)"

    def _diverged(self, loss: float, global_step: int) -> str:
        self.session.writer.wait()
        last, _ = newest_valid([self.paths.checkpoints])
        kept = f"the last checkpoint {last.path} is intact" if last else "no checkpoint was saved"
        return (
            f"{self.model_cfg.name}: the training loss became {loss} at global step "
            f"{global_step}; stopped without saving. Lower training.learning_rate, keep "
            f"training.max_grad_norm on, or use training.amp=bf16 rather than fp16; {kept} "
            "(resume from it with the same command after changing the config and "
            "--force-resume)"
        )

    def _say(self, message: str) -> None:
        if self.ranks.main:  # under torchrun, rank 0 speaks for all
            LOG.info(message)

    def _warn(self, message: str) -> None:
        if self.ranks.main:
            LOG.warning(message)

    def _where(self) -> str:
        s = self.state
        return f"epoch {s.epoch + 1}/{self.tc.epochs}, step {s.step}, global step {s.global_step}"

    def _export(self, out_dir: Path) -> None:
        s = self.state
        export_model(
            self._classifier(),
            self.paths.base,
            out_dir,
            {
                "epoch": s.epoch,
                "global_step": s.global_step,
                "val": s.last_eval,
                "labels": self.labels,
                "family": self.model_cfg.family,
                "max_length": self.tc.max_length,  # what scanning truncates functions to
                # how training read long functions: the scanner reads them the same way
                "long_functions": self.tc.long_functions,
                "dfg_length": self.dfg_length,  # graph nodes the model reads (0: no graph)
            },
        )

    def _class_weights(self, train_split: EncodedSplit) -> torch.Tensor | None:
        if not self.tc.class_weights:
            return None
        counts = torch.bincount(train_split.labels, minlength=len(self.labels)).float()
        weights = counts.sum() / (len(self.labels) * counts.clamp(min=1))
        return weights.to(self.device)


def _to_device(
    batch: tuple[ModelInputs, torch.Tensor], device: torch.device
) -> tuple[ModelInputs, torch.Tensor]:
    """Host to device; on CUDA through pinned memory, so the copy does not block the host."""
    inputs, labels = batch
    if device.type != "cuda":
        return inputs.to(device), labels.to(device)
    pinned = ModelInputs._make(None if t is None else t.pin_memory() for t in inputs)
    return pinned.to(device, non_blocking=True), labels.pin_memory().to(device, non_blocking=True)


def _derived(saved: dict, key: str, value: int, path: Path) -> int:
    """A field older checkpoints lack is derived from the data, with a warning."""
    if key in saved:
        return int(saved[key])
    LOG.warning(
        f"{path} has no {key!r} (written by an older enstack); derived {value} "
        "from the prepared data"
    )
    return value


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _set_aside(path: Path, stamp: str) -> None:
    """Rename `path` (a non-empty directory or a file) to `NAME.old-STAMP` beside it; `enstack
    ckpt clean --old` removes set-aside checkpoint directories when asked."""
    if (path.is_dir() and not any(path.iterdir())) or not path.exists():
        return
    aside = path.with_name(f"{path.name}.old-{stamp}")
    path.rename(aside)
    hint = f" (enstack ckpt clean {path} --old removes it)" if path.name == "checkpoints" else ""
    LOG.info(f"--resume never: moved {path} aside to {aside}{hint}")
