"""The CI workflows' shared plan, and the pull-request workflow: plan -> generated/<name>/ci/pull-request.yml.

A spec is reviewed in pull requests: the generated GitHub Actions workflow runs `aiops check`,
`aiops compile --check` and `aiops verify` on the spec and its committed artefacts, then posts
what the change does to the build (`aiops diff` of the base branch's artefacts and these, and
the compliance document's diff) as the job summary and a pull-request comment.

`Trust` is what every workflow needs to pass `verify`: when the policy requires a signature
(governance.risk_tier high or security.require_signature), the runtime refuses the artefacts
unless AIOPS_TRUSTED_KEYS names the deployment's public keys, so the workflows write them from
the repository variable AIOPS_TRUSTED_KEYS (public keys: not a secret) and fail closed without
it. `aiops compile --check` of a signed build needs the signing key: the workflow reads it from
the repository secret named like the spec's security.signing_key_env. Templates only print this plan.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from aiops.compiler.plan import Plan
from aiops.compiler.sign import signature_policy

FILES = {"ci/pull-request.yml": "ci/pull-request.yml.j2"}
TRUSTED_KEYS = "AIOPS_TRUSTED_KEYS"  # the environment variable the runtime reads, and the repository variable


@dataclass(frozen=True)
class Trust:
    required: bool  # the policy requires a signature: verify needs the trusted keys
    why: str  # the policy's reason, e.g. "governance.risk_tier is high"
    trusted_keys: str  # repository variable and environment variable: AIOPS_TRUSTED_KEYS
    signing_key_env: str  # security.signing_key_env: the secret compile --check signs with


@dataclass(frozen=True)
class ReviewPlan:
    name: str
    version: str
    spec_dir: str
    artefact_dir: str
    tool_version: str
    regenerate: str
    check: str  # the shell line of `aiops check` with the build's overrides
    compile_check: str  # the shell line of `aiops compile --check` with the build's overrides
    trust: Trust


def trust_of(plan: Plan) -> Trust:
    p = signature_policy(plan.security, plan.risk_tier)
    return Trust(p["signature_required"], p["why"], TRUSTED_KEYS, plan.security.signing_key_env)


def build_review_plan(plan: Plan) -> ReviewPlan:
    words = shlex.join([plan.spec_dir, *plan.overrides])
    # the build's own command line (with its --override-reason, if any); a retrained build's is `aiops retrain`
    build = plan.regenerate if plan.regenerate.startswith("aiops compile ") else f"aiops compile {words}"
    return ReviewPlan(
        name=plan.name, version=plan.version, spec_dir=plan.spec_dir, artefact_dir=f"generated/{plan.name}",
        tool_version=plan.tool_version, regenerate=plan.regenerate,
        check=f"aiops check {words} --format github", compile_check=f"{build} --check --format github",
        trust=trust_of(plan))


def render_review(plan: Plan) -> dict[str, str]:
    """{relative path: content} of the pull-request workflow."""
    from aiops.compiler.render import environment

    rp = build_review_plan(plan)
    env = environment()
    return {rel: env.get_template(tpl).render(r=rp, trust=rp.trust) for rel, tpl in FILES.items()}
