"""``ncap rank --strategy halving``: synchronous successive halving over real fine-tuning runs.

Every candidate is trained to the first rung's budget; the candidates are ranked by the rung score
(:mod:`ncap.ranking.rung_scores`) and the top ``ceil(n / eta)`` continue to the next rung, each from
its own checkpoint (:mod:`ncap.training.checkpoint`), so its trajectory is the one an uninterrupted
run would have had. The decisions are :func:`ncap.ranking.halving_core.decide`'s.

Files in ``OUT``:

- ``rungs/<k>/<candidate>.json``: a candidate's record at the end of rung ``k`` (every point so
  far), written atomically after its checkpoint; ``resume`` redoes only a missing, damaged or
  failed one (:mod:`ncap.ranking.halving_state`), from the same inputs.
- ``checkpoints/<candidate>.pt``: where a surviving candidate continues from (deleted once it is
  dropped or finished, unless ``keep_checkpoints``).
- ``rungs.json``: the settings and every decided rung (who was scored, the scores, who continued,
  who was dropped and why), rewritten atomically after each rung (and rebuilt from the rung
  records on resume).
- ``results.json`` (with ``rungs`` and ``cost``), ``results.csv``, the plots and ``rungs.png``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ncap.data.dataset import ImageDataset
from ncap.exceptions import ConfigError, OutputExists
from ncap.predict.capacitance import PredictorSettings
from ncap.predict.caveats import separation
from ncap.ranking.cost import run_cost
from ncap.ranking.executors import CandidateJob, Executor
from ncap.ranking.halving_core import decide, halving_budgets, kept_count, rung_steps
from ncap.ranking.halving_state import check_state, read_rung_record, rung_file
from ncap.ranking.preflight import check_burn_in
from ncap.ranking.rung_scores import (
    DEFAULT_RUNG_SCORE,
    check_rung_score,
    min_points,
    needs_logme,
    reads_source_accuracy,
    score_rung,
)
from ncap.ranking.scoring import assumed_note, target_or_assumed, trust_of
from ncap.ranking.segment import RungJob, checkpoint_path
from ncap.ranking.source_accuracy import require_reader, source_accuracy_summary
from ncap.report import write_outputs
from ncap.report.progress import progress_bars
from ncap.results import RankResult
from ncap.storage import atomic_write_json, to_jsonable
from ncap.training.config import FinetuneConfig
from ncap.training.runtime import Runtime
from ncap.training.schedule import eval_steps

__all__ = ["HalvingSettings", "plan_rungs", "run_halving"]


@dataclass(frozen=True)
class HalvingSettings:
    """Successive halving's settings.

    Parameters
    ----------
    eta : float
        The top ``ceil(n / eta)`` candidates of a rung continue (2 halves, 3 keeps a third).
    min_budget, max_budget : float, optional
        First and last rung budgets in epochs; default: the run's budget (``--epochs``) as the
        maximum and ``max / eta**2`` as the minimum (three rungs).
    score : str
        The rung score (:mod:`ncap.ranking.rung_scores`; default: the recommended score).
    keep_checkpoints : bool
        Keep the checkpoints of dropped and finished candidates.
    """

    eta: float = 2.0
    min_budget: float | None = None
    max_budget: float | None = None
    score: str = DEFAULT_RUNG_SCORE
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        check_rung_score(self.score)
        if not self.eta > 1:
            raise ConfigError(f"eta must be > 1 (2 halves, 3 keeps a third); got {self.eta}.")

    def budgets(self, run_epochs: float) -> tuple[float, ...]:
        top = self.max_budget if self.max_budget is not None else run_epochs
        low = self.min_budget if self.min_budget is not None else top / self.eta**2
        return halving_budgets(low, self.eta, top)


def plan_rungs(
    halving: HalvingSettings, config: FinetuneConfig, n_train: int
) -> tuple[FinetuneConfig, tuple[float, ...], tuple[int, ...]]:
    """The run's config (its budget is the maximum budget, evaluated as ``config`` would be) and
    the rungs' budgets (epochs) and steps."""
    epochs = config.total_steps(n_train) / config.steps_per_epoch(n_train)
    budgets = halving.budgets(config.epochs if config.steps is None else epochs)
    steps = rung_steps(budgets, config.steps_per_epoch(n_train))
    # the default schedule is laid out for the first rung (its points 1/8 ... 1 of it, then
    # doublings), and --val-share's cap for the first rung's training images
    anchor = config.eval_anchor if config.eval_anchor is not None else steps[0]
    run_config = replace(config, epochs=budgets[-1], steps=None, eval_anchor=anchor)
    return run_config, budgets, steps


def _clear(out_dir: Path) -> None:
    for folder in ("rungs", "checkpoints"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    (out_dir / "rungs.json").unlink(missing_ok=True)


def run_halving(
    models: Sequence[str],
    dataset: ImageDataset,
    config: FinetuneConfig,
    predictor: PredictorSettings,
    halving: HalvingSettings,
    *,
    out_dir: Path,
    settings: dict[str, Any],
    environment: dict[str, Any],
    full_epochs: float | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None] | None,
    runtime: Runtime,
    executor: Executor,
    model_options: dict[str, Any],
    source_accuracy: dict[str, float] | None = None,
) -> RankResult:
    """Successive halving over ``models`` (called by :func:`ncap.ranking.rank.rank`);
    ``source_accuracy``: checked values the user gave (:mod:`ncap.ranking.source_accuracy`)."""
    n_train = len(dataset.y_train)
    run_config, budgets, steps = plan_rungs(halving, config, n_train)
    first_points = sum(1 for s in eval_steps(run_config, n_train, extra=steps) if s <= steps[0])
    if first_points < min_points(halving.score, predictor):
        raise ConfigError(
            f"the first rung ({budgets[0]:g} epochs, {steps[0]} steps) has {first_points} "
            f"evaluation point(s) but the {halving.score!r} score needs "
            f"{min_points(halving.score, predictor)}; raise --min-budget or set a small --eval-every."
        )
    check_burn_in(run_config, predictor, n_train, extra=steps)
    # the rungs' scores read each budget as a share of T (assumed as for a fixed budget when unset)
    target, assumed = target_or_assumed(full_epochs, None, budgets[-1])
    given = source_accuracy or {}
    require_reader(given, [halving.score],
                   reads_source_accuracy(halving.score, [b / target for b in budgets]))  # fmt: skip
    reference = full_epochs if full_epochs is not None else budgets[-1]
    if reference < budgets[-1]:
        raise ConfigError(
            f"full_epochs ({full_epochs}) must be at least the maximum budget ({budgets[-1]:g})."
        )
    settings = settings | {
        "finetune": run_config.to_dict(),
        "budget_epochs": budgets[-1],
        "budget_steps": steps[-1],
        "strategy": "halving",
        "halving": asdict(halving) | {"budgets_epochs": list(budgets), "rung_steps": list(steps)},
    }
    stored = json.loads(json.dumps(to_jsonable(settings)))
    state_path = out_dir / "rungs.json"
    if state_path.exists() or (out_dir / "rungs").exists():
        if overwrite:
            _clear(out_dir)
        elif not resume:
            raise OutputExists(
                f"{out_dir} already holds a successive-halving run; pass --resume "
                "(Execution(mode='resume')) to continue it, --overwrite (mode='overwrite') to "
                "start over, or choose another output directory."
            )
        else:
            problem = check_state(state_path, stored)
            if problem is not None and log:
                log(f"{state_path} is malformed ({problem}); it is rebuilt from the rung records")
    ckpt_dir = out_dir / "checkpoints"
    logme = needs_logme(halving.score)
    spe = run_config.steps_per_epoch(n_train)
    order = list(models)
    alive = list(models)
    latest: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {name: 0.0 for name in models}
    history: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    rungs: list[dict[str, Any]] = []
    evidence: dict[str, dict[str, Any]] = {}  # per candidate: what its last rung's score saw
    all_notes: list[str] = [assumed_note(target, None)] if assumed else []
    planned, n = 0, len(models)  # candidate runs over all rungs, if nothing fails
    for k in range(len(budgets)):
        planned += n
        n = kept_count(n, halving.eta, k == len(budgets) - 1)
        if n <= 1:
            break
    with progress_bars(progress, planned, log=log) as bars:
        for k, (budget, stop) in enumerate(zip(budgets, steps, strict=True)):
            todo = []  # a missing, damaged or failed record (of an earlier process) runs again
            for name in alive:
                path = rung_file(out_dir, k, name)
                record, problem = read_rung_record(path, name, stored)
                if problem is not None and log:
                    log(f"{path} is malformed ({problem}); {name} runs rung {k} again")
                if record is None or record["status"] != "ok":
                    todo.append(name)
            job = CandidateJob(
                dataset,
                run_config,
                predictor,
                None,
                runtime,
                model_options,
                rung=RungJob(rung=k, stop_at=stop, eval_steps=steps, checkpoint_dir=str(ckpt_dir)),
                logme=logme,
            )
            if log:
                log(f"rung {k}: {len(alive)} candidate(s) to {budget:g} epochs ({stop} steps)")
            for record in executor.run(
                todo, job, on_start=bars.candidate_start, on_step=bars.step, log=log
            ):
                atomic_write_json(
                    {"settings": settings, "record": record}, rung_file(out_dir, k, record["name"])
                )
                bars.candidate_done(record["name"])
                if log and record["status"] != "ok":
                    log(f"{record['name']} failed: {record['reason']}")
            failed: dict[str, str] = {}
            for name in alive:
                record, problem = read_rung_record(rung_file(out_dir, k, name), name, stored)
                if record is None:  # (written by this process a moment ago)
                    raise ConfigError(f"{rung_file(out_dir, k, name)} cannot be read: {problem}")
                if name in latest:  # LogME was computed once, on the pretrained weights
                    earlier = latest[name].get("backbone") or {}
                    kept = {key: v for key, v in earlier.items() if key.startswith("logme")}
                    record["backbone"] = kept | (record.get("backbone") or {})
                latest[name] = record
                seconds[name] += float(record.get("segment_seconds") or 0.0)
                if record["status"] != "ok":
                    failed[name] = record["reason"] or "failed"
            notes: list[str] = []
            seen: dict[str, dict[str, Any]] = {}
            scores = score_rung(
                halving.score,
                [latest[name] for name in alive],
                predictor,
                budget_steps=stop,
                steps_per_epoch=spe,
                full_epochs=target,
                fraction_of_max=budget / budgets[-1],
                notes=notes,
                classes=dataset.num_classes,
                evidence=seen,
                source_accuracy=given,
            )
            evidence |= seen
            for name in alive:
                history[name].append({"rung": k, "budget_epochs": budget, "score": scores[name]})
            if k == 0:
                all_notes.extend(notes)
                for note in notes if log else ():
                    log(f"note: {note}")
            last = k == len(budgets) - 1
            # a candidate at chance has learnt nothing its score could read: it ranks below the
            # others (among themselves by observed accuracy; failed ones last), whatever its
            # score says
            chance = [n for n in alive if "at-chance" in (seen.get(n) or {}).get("flags", {})]
            observed = {n: latest[n].get("observed_accuracy") or 0.0 for n in chance}
            order_k = (
                [n for n in alive if n not in chance and n not in failed]
                + sorted(chance, key=lambda n: -observed[n])
                + [n for n in alive if n in failed]
            )
            decision = decide(
                {n: None if n in chance else v for n, v in scores.items()},
                order_k,
                eta=halving.eta,
                last=last,
                failed=failed,
            )
            reasons = {}
            for name in decision.dropped:
                if name in failed:
                    reasons[name] = f"failed at rung {k}: {failed[name]}"
                else:
                    pos = decision.ranked.index(name) + 1
                    value = "none" if scores[name] is None else f"{scores[name]:.4f}"
                    flags = ", ".join((seen.get(name) or {}).get("flags") or {})
                    reasons[name] = (
                        f"dropped at rung {k} ({budget:g} epochs): {halving.score} {value}"
                        f"{f' ({flags})' if flags else ''} ranked {pos} of "
                        f"{len(decision.ranked)}; the top {len(decision.kept)} continued"
                    )
            rungs.append(
                {
                    "rung": k,
                    "budget_epochs": budget,
                    "steps": stop,
                    "score": halving.score,
                    "ranked": list(decision.ranked),
                    "scores": {name: scores[name] for name in decision.ranked},
                    "kept": list(decision.kept),
                    "dropped": reasons,
                    "intervals": {
                        n: ((seen.get(n) or {}).get("prediction") or {}).get("95")
                        for n in decision.ranked
                    },
                    "flags": {n: sorted((seen.get(n) or {}).get("flags") or {}) for n in seen},
                    "separation": _cut(decision, seen),
                }
            )
            atomic_write_json({"settings": settings, "rungs": rungs}, state_path)
            done = last or len(decision.kept) <= 1
            finished = list(decision.dropped) + (list(decision.kept) if done else [])
            if not halving.keep_checkpoints:
                for name in finished:
                    checkpoint_path(ckpt_dir, name).unlink(missing_ok=True)
            alive = list(decision.kept)
            if last or len(alive) <= 1:
                break
    ranking = _final_order(rungs, latest)
    records = []
    for name in order:
        record = dict(latest[name])
        record.pop("segment_seconds", None)
        record["seconds"] = record["cost_seconds"] = seconds[name]
        record["steps"] = int(record.get("steps") or 0)
        dropped = next((r for r in rungs if name in r["dropped"]), None)
        record |= evidence.get(name, {})  # the score, prediction and flags that decided
        record["halving"] = {
            "rungs": history[name],
            "dropped_at_rung": None if dropped is None else dropped["rung"],
            "why": None if dropped is None else dropped["dropped"][name],
        }
        records.append(record)
    decided = [r for r in rungs if len(r["ranked"]) > 1] or rungs
    final = decided[-1]
    verdict = separation([
        {"name": n, "prediction": (evidence.get(n) or {}).get("prediction")}
        for n in final["ranked"]
        if n in evidence
    ])  # fmt: skip
    if verdict.get("statement"):
        verdict["statement"] = (
            f"at the last rung that compared candidates (rung {final['rung']}, "
            f"{final['budget_epochs']:g} epochs): {verdict['statement']}"
        )
    trust = trust_of(  # the statement of the last rung that compared candidates
        [{"name": n} | evidence[n] for n in final["ranked"] if n in evidence],
        final["budget_epochs"] / target if target else None,
    )
    recorded: dict[str, Any] = {}
    if given:
        recorded, given_note = source_accuracy_summary(given, records)
        all_notes.append(given_note)
    result = RankResult(
        candidates=records,
        settings=settings
        | ({"source_accuracy": recorded} if recorded else {})
        | environment
        | {
            "score": {
                "name": halving.score,
                "requested": halving.score,
                "target_epochs": target,
                "target_assumed": assumed,
                "notes": all_notes,
                "separation": verdict,
                "trust": trust,
            }
        },
        out_dir=out_dir,
        cost=run_cost(records, full_steps=round(reference * spe), full_epochs=reference),
        order=ranking,
        rungs=rungs,
    )
    result.files = write_outputs(result)  # (with rungs.png)
    return result


def _cut(decision, seen: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Whether a rung's cut separated the last kept from the first dropped candidate (their 95%
    intervals apart, neither flagged); None when nothing was cut."""
    dropped = [n for n in decision.ranked if n in decision.dropped and n in seen]
    kept = [n for n in decision.kept if n in seen]
    if not dropped or not kept:
        return None
    pair = [{"name": n, "prediction": seen[n].get("prediction")} for n in (kept[-1], dropped[0])]
    verdict = separation(pair)
    if not verdict["separated"]:
        verdict["statement"] = (
            f"the cut between {kept[-1]} (kept) and {dropped[0]} (dropped) could not tell them "
            "apart: " + ("their 95% intervals overlap" if all(
                (p["prediction"] or {}).get("95") for p in pair
            ) else "an interval is withheld (flagged) or missing")
        )  # fmt: skip
    return verdict


def _final_order(rungs: list[dict[str, Any]], latest: dict[str, dict[str, Any]]) -> list[str]:
    """The survivors of the last rung in its order, then those dropped later before those dropped
    earlier (each rung in its own order); failed candidates are left out."""
    out: list[str] = []
    for rung in reversed(rungs):
        for name in rung["ranked"]:
            if name not in out and latest[name]["status"] == "ok":
                out.append(name)
    return out
