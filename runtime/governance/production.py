"""Production mode: the check serve and score run before loading artefacts with --production.

The folder must hold the registry's production entry for its model name (same run id and
manifest sha256), blessed, with approvals that verify under the spec's policy (see
approvals.verify) and, for a high risk tier, passing fairness and explanation evidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiops.runtime.governance import approvals as A
from aiops.runtime.governance import identity as I
from aiops.runtime.governance.store import RegistryError, Store
from aiops.runtime.governance.subject import policy, registry_location, subject


class GovernanceError(Exception):
    """Refused in production mode; the message says why and what to do."""


@dataclass(frozen=True)
class Production:
    run_id: str
    approvers: tuple[str, ...]
    registry: str


def check(folder: str | Path, registry: str | None = None, insecure_dev: bool = False) -> Production:
    d = Path(folder)
    if not (d / "manifest.json").is_file():
        raise GovernanceError(f"'{d}' has no manifest.json: it is not the output of 'aiops compile'")
    where = registry_location(registry, d)
    s, pol = subject(d), policy(d)
    try:
        prod = Store(where).production(s["name"])
        if prod is None:
            raise GovernanceError(f"refusing production mode for '{d}': the registry {where} has no production "
                                  f"model named {s['name']}\n  approve a run ('aiops approve RUN --reason ...') and "
                                  f"promote it ('aiops promote RUN --to production')")
        if prod["run_id"] != s["run_id"] or prod["manifest_sha256"] != s["manifest_sha256"]:
            raise GovernanceError(f"refusing production mode for '{d}': it holds run {s['run_id']}, but the "
                                  f"production model of {s['name']} is run {prod['run_id']} "
                                  f"(recorded at {prod['artefact_dir']})\n  serve that folder, or promote run "
                                  f"{s['run_id']} with 'aiops promote {s['run_id']} --to production'")
        v = A.verify(d, s, pol, prod["built_by"], insecure_dev=insecure_dev)
        extra = A.evidence_problems(d, pol)
    except (RegistryError, I.IdentityError) as exc:
        raise GovernanceError(f"refusing production mode for '{d}': {exc}") from None
    if not v.enough or extra:
        lines = [f"refusing production mode for '{d}': run {s['run_id']} has {len(v.approvers)} valid "
                 f"approval(s) of {v.required} required" + (f" ({', '.join(v.approvers)})" if v.approvers else "")]
        lines += [f"  - {p}" for p in v.problems + extra]
        raise GovernanceError("\n".join(lines))
    return Production(s["run_id"], tuple(v.approvers), where)


def add_arguments(parser) -> None:
    """--production and --registry for serve and score."""
    parser.add_argument("--production", action="store_true",
                        help="load only the registry's production model, whose approvals must verify")
    parser.add_argument("--registry", metavar="LOCATION",
                        help="with --production: the registry (default $AIOPS_REGISTRY, else governance.json's)")


def gate(args) -> str | None:
    """The refusal message when --production is given and the folder is not the verified production
    model; None otherwise (also prints which run and approvals are served)."""
    import sys

    if not getattr(args, "production", False):
        return None
    try:
        p = check(args.artefact_dir, getattr(args, "registry", None))
    except GovernanceError as exc:
        return str(exc)
    print(f"production: run {p.run_id} approved by {', '.join(p.approvers)} (registry {p.registry})",
          file=sys.stderr)
    return None
