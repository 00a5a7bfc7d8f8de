"""The documentation that is generated from code stays in sync with it."""

from pathlib import Path

from django.core.management import call_command

from sharestore.core.management.commands.error_catalogue import catalogue_markdown
from sharestore.errors import CATALOGUE

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_error_catalogue_doc_is_current():
    assert (DOCS / "errors.md").read_text() == catalogue_markdown(), (
        "run: python manage.py error_catalogue > docs/errors.md"
    )


def test_every_scode_has_both_messages_and_a_fitting_status():
    for scode, cls in CATALOGUE.items():
        assert cls.message and cls.message_cn and cls.__doc__, cls
        # 1xxx-4xxx are the caller's to fix (HTTP 4xx); 5xxx are ours or the storage's (HTTP 5xx).
        expected_class = 5 if scode >= 5000 else 4
        assert cls.http_status // 100 == expected_class, (scode, cls.http_status)


def test_openapi_schema_builds(db, tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    text = out.read_text()
    assert "/v1/volume/share/create" in text and "/v1/volume/share/list" in text


def test_schema_operation_ids_follow_the_contract_paths_and_carry_its_examples(db, tmp_path):
    import yaml

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            assert operation["operationId"] == path.strip("/").removeprefix("v1/").replace("/", "_"), path
    create = schema["paths"]["/v1/volume/share/create"]["post"]
    example = create["requestBody"]["content"]["application/json"]["examples"]["contract"]["value"]
    assert example["tenant"] == "fab210d2-b9b8-4b0b-bd61-50812ce3d4d0"
    answer = create["responses"]["200"]["content"]["application/json"]["examples"]["contract"]["value"]
    assert answer["scode"] == 0
