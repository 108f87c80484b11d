"""Key pairs through the real boto3 against the in-process server: made, imported, described,
deleted, and given to instances; fingerprints checked against OpenSSH's and OpenSSL's own
computation, as AWS tells its users to check them."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kubenova.ec2 import ids, key_pairs
from tests.unit.ec2 import fakes, serving

needs_tools = pytest.mark.skipif(
    not (shutil.which("ssh-keygen") and shutil.which("openssl")),
    reason="ssh-keygen and openssl compute the fingerprints independently",
)
_CRD = Path(__file__).parents[3] / "crds" / "compute.kubenova.io_instances.yaml"


@pytest.fixture
def objects():
    return fakes.FakeCluster()


@pytest.fixture
def ec2(objects):
    with serving.served(objects) as endpoint, serving.client(endpoint) as client:
        yield client


def _run(*command: str, data: bytes | None = None) -> bytes:
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout


def _ssh_keygen_sha256(public_line: str, tmp_path: Path) -> str:
    path = tmp_path / "key.pub"
    path.write_text(public_line + "\n")
    printed = _run("ssh-keygen", "-l", "-E", "sha256", "-f", str(path)).decode()
    return printed.split()[1].removeprefix("SHA256:")


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def _stored_values(objects: fakes.FakeCluster) -> list[str]:
    return [
        base64.b64decode(value).decode()
        for secret in objects.secret_objects.values()
        for value in secret["data"].values()
    ]


@needs_tools
def test_an_rsa_key_pair_is_made_as_ec2_makes_it(ec2, objects, tmp_path):
    made = ec2.create_key_pair(KeyName="deploy key")
    material = made["KeyMaterial"]
    assert material.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert ids.well_formed(made["KeyPairId"], "key-")
    private = serialization.load_pem_private_key(material.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size >= 2048
    # EC2's fingerprint of a key it made: SHA-1 of the PKCS#8 DER, here converted by openssl.
    pkcs8 = _run(
        "openssl", "pkcs8", "-topk8", "-nocrypt", "-outform", "DER", data=material.encode()
    )
    assert made["KeyFingerprint"] == _colon_hex(hashlib.sha1(pkcs8).digest())
    [described] = ec2.describe_key_pairs(KeyNames=["deploy key"], IncludePublicKey=True)["KeyPairs"]
    assert described["KeyPairId"] == made["KeyPairId"]
    assert described["KeyType"] == "rsa"
    assert described["KeyFingerprint"] == made["KeyFingerprint"]
    assert "CreateTime" in described
    own_public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert described["PublicKey"] == own_public.decode() + " deploy key"
    # The private key is handed out once and kept nowhere.
    [secret] = objects.secret_objects.values()
    assert secret["type"] == key_pairs.SECRET_TYPE
    assert secret["metadata"]["labels"] == {key_pairs.KEY_PAIR_ID_LABEL: made["KeyPairId"]}
    assert not any("PRIVATE" in value for value in _stored_values(objects))


@needs_tools
def test_an_ed25519_key_pair_is_made_in_openssh_format(ec2, tmp_path):
    made = ec2.create_key_pair(KeyName="ed", KeyType="ed25519")
    assert made["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    private = serialization.load_ssh_private_key(made["KeyMaterial"].encode(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    [described] = ec2.describe_key_pairs(KeyNames=["ed"], IncludePublicKey=True)["KeyPairs"]
    public_line = " ".join(described["PublicKey"].split()[:2])
    own = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert public_line == own.decode()
    assert made["KeyFingerprint"] == _ssh_keygen_sha256(public_line, tmp_path)
    assert described["KeyType"] == "ed25519"


@needs_tools
def test_imported_keys_get_ec2s_fingerprints(ec2, tmp_path):
    _run("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-C", "me@laptop", "-f",
         str(tmp_path / "rsa"))  # fmt: skip
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ed"))
    rsa_line = (tmp_path / "rsa.pub").read_bytes()
    # boto3 base64-encodes PublicKeyMaterial itself, as it does every blob.
    imported = ec2.import_key_pair(KeyName="laptop", PublicKeyMaterial=rsa_line)
    assert ids.well_formed(imported["KeyPairId"], "key-")
    # AWS's own recipe: the DER SubjectPublicKeyInfo's MD5.
    spki_pem = _run("ssh-keygen", "-e", "-m", "PKCS8", "-f", str(tmp_path / "rsa.pub"))
    der = _run("openssl", "pkey", "-pubin", "-outform", "DER", data=spki_pem)
    assert imported["KeyFingerprint"] == _colon_hex(hashlib.md5(der).digest())
    ed_line = (tmp_path / "ed.pub").read_text()
    ed_imported = ec2.import_key_pair(KeyName="ed", PublicKeyMaterial=ed_line.encode())
    assert ed_imported["KeyFingerprint"] == _ssh_keygen_sha256(ed_line.strip(), tmp_path)
    listed = ec2.describe_key_pairs(IncludePublicKey=True)["KeyPairs"]
    assert [(pair["KeyName"], pair["KeyType"]) for pair in listed] == [
        ("ed", "ed25519"),
        ("laptop", "rsa"),
    ]
    # The public key given back is the one given, with the key's name as its comment.
    assert listed[1]["PublicKey"] == " ".join(rsa_line.decode().split()[:2]) + " laptop"


@pytest.mark.parametrize(
    "material",
    [
        b"not a key at all",
        b"ssh-rsa AAAA!!!notbase64",
        b"ssh-rsa " + base64.b64encode(b"\x00\x00\x00\x07ssh-rsa junk"),
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\nssh-ed25519 AAAA",
        "ssh-ed25519 clé".encode(),
    ],
)
def test_junk_is_refused_as_a_bad_key_format(ec2, objects, material):
    assert serving.code(ec2.import_key_pair, KeyName="k", PublicKeyMaterial=material) == (
        "InvalidKey.Format"
    )
    assert objects.secret_objects == {}


def test_a_short_rsa_key_is_refused(ec2):
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    line = short.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert serving.code(ec2.import_key_pair, KeyName="k", PublicKeyMaterial=line) == (
        "InvalidKey.Format"
    )


def test_names_are_unique_per_namespace(objects):
    with (
        serving.served(objects) as endpoint,
        serving.client(endpoint) as ours,
        serving.client(endpoint, serving.TEAM_B) as theirs,
    ):
        ours.create_key_pair(KeyName="prod")
        assert serving.code(ours.create_key_pair, KeyName="prod") == ("InvalidKeyPair.Duplicate")
        line = (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        assert serving.code(ours.import_key_pair, KeyName="prod", PublicKeyMaterial=line) == (
            "InvalidKeyPair.Duplicate"
        )
        # Another namespace has keys of its own, of any name, and sees none of ours.
        assert theirs.describe_key_pairs()["KeyPairs"] == []
        assert serving.code(theirs.describe_key_pairs, KeyNames=["prod"]) == (
            "InvalidKeyPair.NotFound"
        )
        theirs.import_key_pair(KeyName="prod", PublicKeyMaterial=line)
        assert len(theirs.describe_key_pairs()["KeyPairs"]) == 1
        assert len(ours.describe_key_pairs()["KeyPairs"]) == 1


def test_describe_by_name_id_and_filters(ec2):
    first = ec2.create_key_pair(KeyName="a", KeyType="ed25519")
    second = ec2.create_key_pair(KeyName="b")

    def names(**kwargs):
        return [pair["KeyName"] for pair in ec2.describe_key_pairs(**kwargs)["KeyPairs"]]

    assert names() == ["a", "b"]
    assert names(KeyPairIds=[second["KeyPairId"]]) == ["b"]
    assert names(Filters=[{"Name": "key-name", "Values": ["a", "zzz"]}]) == ["a"]
    assert names(Filters=[{"Name": "fingerprint", "Values": [second["KeyFingerprint"]]}]) == ["b"]
    assert names(Filters=[{"Name": "key-pair-id", "Values": [first["KeyPairId"]]}]) == ["a"]
    assert "PublicKey" not in ec2.describe_key_pairs()["KeyPairs"][0]
    assert serving.code(ec2.describe_key_pairs, KeyNames=["a", "nope"]) == (
        "InvalidKeyPair.NotFound"
    )
    assert serving.code(ec2.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"]) == (
        "InvalidKeyPair.NotFound"
    )
    assert serving.code(
        ec2.describe_key_pairs, Filters=[{"Name": "owner-id", "Values": ["x"]}]
    ) == ("InvalidParameterValue")


def test_delete_by_name_or_id_and_a_missing_name_succeeds(ec2, objects):
    first = ec2.create_key_pair(KeyName="a")
    second = ec2.create_key_pair(KeyName="b")
    assert ec2.delete_key_pair(KeyName="a")["KeyPairId"] == first["KeyPairId"]
    ec2.delete_key_pair(KeyPairId=second["KeyPairId"])
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert objects.secret_objects == {}
    assert ec2.delete_key_pair(KeyName="never-was")["Return"] is True
    # Made again under its old name, a key pair is a new one.
    again = ec2.create_key_pair(KeyName="a")
    assert again["KeyPairId"] != first["KeyPairId"]


def test_bad_parameters_are_refused_by_name(ec2):
    assert serving.code(ec2.create_key_pair, KeyName="k", KeyType="dsa") == (
        "InvalidParameterValue"
    )
    assert serving.code(ec2.create_key_pair, KeyName="k", KeyFormat="ppk") == (
        "InvalidParameterValue"
    )
    assert serving.code(ec2.create_key_pair, KeyName="x" * 256) == "InvalidParameterValue"
    assert serving.code(ec2.create_key_pair, KeyName="tab\there") == "InvalidParameterValue"
    assert serving.code(ec2.delete_key_pair) == "MissingParameter"
    assert serving.code(ec2.create_key_pair, KeyName="k", DryRun=True) == "DryRunOperation"


def _crd_key_pattern() -> re.Pattern[str]:
    crd = yaml.safe_load(_CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return re.compile(spec["properties"]["sshAuthorizedKeys"]["items"]["pattern"])


def test_run_instances_with_a_key_name_gives_the_guest_the_key(ec2, objects):
    made = ec2.create_key_pair(KeyName="ops", KeyType="ed25519")
    ami = ids.image_id(objects.image_objects["cirros"])
    [instance] = ec2.run_instances(
        ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1, KeyName="ops"
    )["Instances"]
    assert instance["KeyName"] == "ops"
    [created] = objects.instances("team-a")
    [line] = created["spec"]["sshAuthorizedKeys"]
    private = serialization.load_ssh_private_key(made["KeyMaterial"].encode(), password=None)
    own = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert line == own.decode() + " ops"
    # The kube-apiserver's own rule for the field takes it.
    assert _crd_key_pattern().match(line)
    [described] = ec2.describe_instances()["Reservations"][0]["Instances"]
    assert described["KeyName"] == "ops"
    # A key the namespace does not have: refused before anything is made.
    assert serving.code(
        ec2.run_instances, ImageId=ami, InstanceType="m1.tiny", MinCount=1, MaxCount=1, KeyName="x"
    ) == ("InvalidKeyPair.NotFound")
    assert len(objects.instances("team-a")) == 1
