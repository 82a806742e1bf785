"""`aiops package ARTEFACT_DIR`: a Dockerfile and a Kubernetes manifest for the slim runtime.

Both files are a pure function of the verified artefact folder (its manifest and serving.json)
and a few deployment choices, so they are deterministic and committed next to `generated/`
(`deploy/<name>/`). The artefact folder is input we check, not input we trust: its name and
version must match the spec grammar before they reach a Dockerfile or YAML, and every value
placed in YAML goes through `json.dumps` (JSON is YAML), every shell word through shlex.quote.

The image: a base pinned by digest, the aiops wheel with no extra (no compiler libraries),
installed under the lock (`constraints.txt`), the artefacts read-only and owned by root, a
non-root user, a health check on /readyz, and `aiops serve`, which verifies the manifest and
its signature against the deployment's trusted keys before it listens.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from aiops.compiler import __version__

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
DIGEST = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
# python:3.11-slim-bookworm, pinned by digest. Not pulled on this machine (no registry access
# here): check it with `docker buildx imagetools inspect python:3.11-slim-bookworm` and pass
# --base-image to move it.
DEFAULT_BASE = "python:3.11-slim-bookworm@sha256:b18992999dbe963a45a8a4da40ac2b1975be1a776d939d098c647482bcad5cba"
UID = 10001
PORT = 8000
STATE = "/var/lib/aiops"
ARTEFACTS = "/srv/aiops/artefacts"
TRUST_DIR = "/etc/aiops/trust"


class PackageError(Exception):
    """The artefact folder or an option cannot be packaged; the message says why."""


@dataclass(frozen=True)
class DeployPlan:
    name: str
    version: str
    manifest_sha256: str
    artefact_dir: str  # as given, relative to the build context (the repository root)
    out_dir: str
    base_image: str
    wheel: str
    secret_envs: tuple[str, ...]  # environment variables the runtime reads keys from
    replicas: int
    workers: int

    @property
    def k8s_name(self) -> str:
        return "aiops-" + self.name.replace("_", "-")

    @property
    def image(self) -> str:
        return f"aiops-{self.name}:{self.version}"


def plan(artefact_dir: str, out_dir: str | None, base_image: str = DEFAULT_BASE, replicas: int = 2,
         workers: int = 2) -> DeployPlan:
    from aiops.runtime.stable import file_sha256

    d = Path(artefact_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        serving = json.loads((d / "serving.json").read_text())
        name, version = manifest["name"], manifest["version"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PackageError(f"'{d}' is not an artefact folder with a readable manifest.json and serving.json: "
                           "run 'aiops compile SPEC_DIR' first") from None
    if not isinstance(name, str) or not NAME.match(name):
        raise PackageError(f"manifest name {name!r} is not an identifier ([a-z][a-z0-9_]{{0,63}}); refusing to "
                           "write it into a Dockerfile")
    if not isinstance(version, str) or not SEMVER.match(version):
        raise PackageError(f"manifest version {version!r} is not a SemVer version; refusing to package it")
    if not DIGEST.match(base_image):
        raise PackageError(f"--base-image {base_image!r} is not pinned by digest: write IMAGE@sha256:<64 hex>")
    if replicas < 1 or workers < 1:
        raise PackageError("--replicas and --workers must be at least 1")
    envs = {"AIOPS_API_KEYS"}
    enc = (serving.get("security") or {}).get("encryption_at_rest") or {}
    if enc.get("enabled") and isinstance(enc.get("key_env"), str):
        if not re.match(r"^[A-Z_][A-Z0-9_]{0,63}$", enc["key_env"]):
            raise PackageError(f"serving.json names the key variable {enc['key_env']!r}, not an environment "
                               "variable name")
        envs.add(enc["key_env"])
    sec = serving.get("security") or {}
    if (sec.get("audit_log") or {}).get("enabled"):  # the audit log's MAC key and checkpoint signing key
        envs |= {"AIOPS_LOG_KEY", "AIOPS_LOG_SIGNING_KEY"}
    if sec.get("masking"):  # the masking key: the read-only root file system holds no per-machine key
        envs.add("AIOPS_MASK_SALT")
    rel = Path(artefact_dir).as_posix().rstrip("/")
    if rel.startswith("/") or ".." in Path(rel).parts:
        raise PackageError(f"give the artefact folder relative to the build context (the repository root), "
                           f"without '..': got {artefact_dir!r}")
    return DeployPlan(name=name, version=version, manifest_sha256=file_sha256(d / "manifest.json"),
                      artefact_dir=rel, out_dir=Path(out_dir or f"deploy/{name}").as_posix(),
                      base_image=base_image, wheel=f"aiops-{__version__}-py3-none-any.whl",
                      secret_envs=tuple(sorted(envs)), replicas=replicas, workers=workers)


def _header(p: DeployPlan, comment: str = "#") -> list[str]:
    return [f"{comment} Generated by aiops {__version__} from {p.artefact_dir} (manifest sha256 "
            f"{p.manifest_sha256[:16]}). DO NOT EDIT.",
            f"{comment} Regenerate: aiops package {p.artefact_dir} --out {p.out_dir}"]


def dockerfile(p: DeployPlan) -> str:
    j = json.dumps
    health = ("import sys, urllib.request; "
              f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{PORT}/readyz', timeout=2).status == 200 "
              "else 1)")
    lines = _header(p) + [
        "# Build from the repository root, with the wheel and the lock beside it:",
        "#   pip wheel --no-deps -w dist . && docker build -f "
        f"{p.out_dir}/Dockerfile -t {p.image} .",
        "# The image holds the runtime only (no compiler libraries) and the artefacts read-only; keys come",
        "# from the deployment at run time (see the Kubernetes manifest beside this file).",
        f"FROM {p.base_image}",
        "",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        f"    AIOPS_TRUSTED_KEYS={TRUST_DIR}/trusted_keys",
        f"RUN groupadd --system --gid {UID} aiops \\",
        f"    && useradd --system --uid {UID} --gid aiops --no-create-home --shell /usr/sbin/nologin aiops \\",
        f"    && mkdir -p {STATE} && chown {UID}:{UID} {STATE}",
        "COPY constraints.txt /tmp/aiops/constraints.txt",
        f"COPY dist/{p.wheel} /tmp/aiops/",
        f"RUN pip install --no-cache-dir -c /tmp/aiops/constraints.txt /tmp/aiops/{p.wheel} \\",
        "    && rm -rf /tmp/aiops",
        f"COPY --chown=root:root {p.artefact_dir} {ARTEFACTS}",
        f"RUN chmod -R a-w,a+rX {ARTEFACTS}",
        "",
        f"USER {UID}:{UID}",
        f"WORKDIR {STATE}",
        f"EXPOSE {PORT}",
        f"HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD [\"python\", \"-c\", {j(health)}]",
        "ENTRYPOINT [" + ", ".join(j(a) for a in (
            "aiops", "serve", ARTEFACTS, "--host", "0.0.0.0", "--port", str(PORT), "--workers", str(p.workers),
            "--log-dir", f"{STATE}/serving")) + "]",
    ]
    return "\n".join(lines) + "\n"


def kubernetes(p: DeployPlan) -> str:
    """A Deployment and a Service, as YAML (block style, every scalar written as JSON)."""
    j = json.dumps
    labels = {"app.kubernetes.io/name": p.k8s_name, "app.kubernetes.io/version": p.version,
              "app.kubernetes.io/managed-by": "aiops"}
    sel = {"app.kubernetes.io/name": p.k8s_name}
    secret = f"{p.k8s_name}-keys"
    env_key = {"AIOPS_API_KEYS": "api-keys"}
    out = _header(p) + [
        f"# Secrets are referenced, never written here: create '{secret}' (keys: "
        + ", ".join(sorted(env_key.get(e, e.lower().replace("_", "-")) for e in p.secret_envs))
        + f") and '{p.k8s_name}-trust' (key: trusted_keys) before applying.",
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {j(p.k8s_name)}",
        "  labels:",
        *[f"    {j(k)}: {j(v)}" for k, v in labels.items()],
        "spec:",
        f"  replicas: {p.replicas}",
        "  selector:",
        "    matchLabels:",
        *[f"      {j(k)}: {j(v)}" for k, v in sel.items()],
        "  template:",
        "    metadata:",
        "      labels:",
        *[f"        {j(k)}: {j(v)}" for k, v in labels.items()],
        "    spec:",
        "      automountServiceAccountToken: false",
        "      securityContext:",
        "        runAsNonRoot: true",
        f"        runAsUser: {UID}",
        f"        runAsGroup: {UID}",
        f"        fsGroup: {UID}",
        "        seccompProfile:",
        "          type: \"RuntimeDefault\"",
        "      containers:",
        "        - name: \"serve\"",
        f"          image: {j(p.image)}",
        "          imagePullPolicy: \"IfNotPresent\"",
        "          ports:",
        "            - name: \"http\"",
        f"              containerPort: {PORT}",
        "          env:",
    ]
    for e in p.secret_envs:
        out += [f"            - name: {j(e)}",
                "              valueFrom:",
                "                secretKeyRef:",
                f"                  name: {j(secret)}",
                f"                  key: {j(env_key.get(e, e.lower().replace('_', '-')))}"]
    out += [
        "          readinessProbe:",
        "            httpGet:",
        "              path: \"/readyz\"",
        "              port: \"http\"",
        "            periodSeconds: 5",
        "            failureThreshold: 3",
        "          livenessProbe:",
        "            httpGet:",
        "              path: \"/healthz\"",
        "              port: \"http\"",
        "            initialDelaySeconds: 10",
        "            periodSeconds: 10",
        "          resources:",
        "            requests:",
        "              cpu: \"500m\"",
        "              memory: \"512Mi\"",
        "            limits:",
        f"              cpu: {j(str(p.workers))}",
        "              memory: \"1Gi\"",
        "          securityContext:",
        "            allowPrivilegeEscalation: false",
        "            readOnlyRootFilesystem: true",
        "            runAsNonRoot: true",
        "            capabilities:",
        "              drop: [\"ALL\"]",
        "          volumeMounts:",
        "            - name: \"state\"",
        f"              mountPath: {j(STATE)}",
        "            - name: \"tmp\"",
        "              mountPath: \"/tmp\"",
        "            - name: \"trust\"",
        f"              mountPath: {j(TRUST_DIR)}",
        "              readOnly: true",
        "      volumes:",
        "        # the prediction log and job results: use a PersistentVolumeClaim in production",
        "        - name: \"state\"",
        "          emptyDir: {}",
        "        - name: \"tmp\"",
        "          emptyDir:",
        "            medium: \"Memory\"",
        "            sizeLimit: \"64Mi\"",
        "        - name: \"trust\"",
        "          secret:",
        f"            secretName: {j(p.k8s_name + '-trust')}",
        "---",
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {j(p.k8s_name)}",
        "  labels:",
        *[f"    {j(k)}: {j(v)}" for k, v in labels.items()],
        "spec:",
        "  type: \"ClusterIP\"",
        "  selector:",
        *[f"    {j(k)}: {j(v)}" for k, v in sel.items()],
        "  ports:",
        "    - name: \"http\"",
        "      port: 80",
        "      targetPort: \"http\"",
    ]
    return "\n".join(out) + "\n"


def render(p: DeployPlan) -> dict[str, str]:
    return {"Dockerfile": dockerfile(p), "kubernetes.yaml": kubernetes(p)}


def write(p: DeployPlan, check_only: bool = False) -> list[str]:
    """Write the files (or, with check_only, list those that differ from what is on disk)."""
    out = Path(p.out_dir)
    stale = []
    for rel, text in render(p).items():
        path = out / rel
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(str(path))
        if not check_only:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale
