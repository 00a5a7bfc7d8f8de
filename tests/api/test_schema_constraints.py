"""The OpenAPI schema declares the constraints the server enforces on every request field, so a client
(or a fuzzer) that follows it is never refused for a rule it was not told."""

import re

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from backups.services.common import MAX_EPOCH
from sharestore import errors
from volumes.choices import VolumeType
from volumes.services.volumes import DESC_MAX_LENGTH, MIN_VOLUME_BYTES, SECTOR, validate_name

NAME_FIELDS = {
    "VolumeShareCreateRequest": "volume_name",
    "VolumeShareCloneRequest": "clone_dst_vol_name",
    "VolumeShareSnapshotCreateRequest": "snapshot_name",
    "VolumeShareBackupAddRequest": "backup_name",
    "VolumeShareBackupRestoreRequest": "new_volume_name",
    "PoolShareCreateRequest": "pool_name",
    "BackupPointAddRequest": "name",
    "BackupPointUpdateRequest": "backup_point_name",
}
# Fields that name an existing object by UUID, where "" or absence means "no filter".
OPTIONAL_UUID_FILTERS = {
    ("VolumeShareListRequest", "filter_pool_uuid"),
    ("backup/list", "tenant"),
    ("backup/list", "filter_volume_uuid"),
    ("PoolShareListRequest", "tenant"),
    ("BackupPointDeleteRequest", "tenant"),
}
UUID_NAMES = re.compile(r"(uuid|tenant)$")


@pytest.fixture(scope="module")
def schema(django_db_blocker, tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    return yaml.safe_load(out.read_text())


def request_properties(schema, component):
    return schema["components"]["schemas"][component]["properties"]


def backup_list_parameters(schema):
    operation = schema["paths"]["/v1/volume/share/backup/list"]["get"]
    return {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}


def request_components(schema):
    return {name: c for name, c in schema["components"]["schemas"].items() if name.endswith("Request")}


def alternatives(field_schema):
    """A field's schema, and its "" alternative when it takes one."""
    if "oneOf" not in field_schema:
        return field_schema, None
    main, blank = field_schema["oneOf"]
    return main, blank


def test_every_uuid_field_declares_the_uuid_format(schema):
    seen = 0
    for name, component in request_components(schema).items():
        for field, field_schema in component["properties"].items():
            if UUID_NAMES.search(field):
                main, blank = alternatives(field_schema)
                if main.get("type") == "array":  # a list of UUIDs (the pool API's avail_tenant)
                    main = main["items"]
                assert main.get("format") == "uuid", (name, field)
                assert (blank is not None) == ((name, field) in OPTIONAL_UUID_FILTERS), (name, field)
                seen += 1
    for field, field_schema in backup_list_parameters(schema).items():
        if UUID_NAMES.search(field):
            main, blank = alternatives(field_schema)
            assert main.get("format") == "uuid", field
            assert (blank is not None) == (("backup/list", field) in OPTIONAL_UUID_FILTERS), field
            seen += 1
    assert seen > 50


@pytest.mark.parametrize("filter_field", ["filter_pool_uuid"])
def test_volume_list_uuid_filter_takes_a_uuid_or_blank(schema, filter_field):
    main, blank = alternatives(request_properties(schema, "VolumeShareListRequest")[filter_field])
    assert main["format"] == "uuid"
    assert blank == {"type": "string", "maxLength": 0}


@pytest.mark.parametrize("component,field", sorted(NAME_FIELDS.items()))
def test_names_declare_the_name_rule(schema, component, field):
    declared = request_properties(schema, component)[field]
    assert "oneOf" not in declared, "an empty name is refused: no blank alternative"
    assert declared["type"] == "string"
    assert declared["minLength"] == 1
    assert declared["maxLength"] == settings.SHARESTORE_NAME_MAX_LENGTH
    assert field in schema["components"]["schemas"][component]["required"]
    pattern = re.compile(declared["pattern"])
    # Control (Cc), format (Cf: soft hyphen, zero-width space, BOM), private use (Co), blank names.
    for refused in [
        "a\x00b",
        "a\tb",
        "a\nb",
        "a\x7fb",
        "a\x85b",
        "\x1f",
        "a\u00adb",
        "\u200b",
        "\ufeffa",
        "x\ue000",
        "   ",
        "\u3000",
    ]:
        assert not pattern.search(refused), repr(refused)
        with pytest.raises(errors.InvalidName):
            validate_name(refused, field=field)
    for accepted in ["a", "卷-1", "with space", " a ", "x" * settings.SHARESTORE_NAME_MAX_LENGTH]:
        assert pattern.search(accepted), accepted
        assert validate_name(accepted, field=field) == accepted.strip()


def test_volume_type_is_an_enumeration(schema):
    declared = request_properties(schema, "VolumeShareCreateRequest")["volume_type"]
    target = schema["components"]["schemas"][declared["$ref"].rsplit("/", 1)[1]]
    assert target["enum"] == list(VolumeType.values)
    assert "" not in target["enum"]


def test_capacities_declare_their_bounds(schema):
    create = request_properties(schema, "VolumeShareCreateRequest")
    capacity = create["capacity"]
    assert capacity["type"] == "integer"
    assert capacity["minimum"] == MIN_VOLUME_BYTES
    assert capacity["maximum"] == settings.SHARESTORE_MAX_VOLUME_BYTES
    assert capacity["multipleOf"] == SECTOR
    snap_capacity = create["snap_capacity"]
    assert snap_capacity["minimum"] == 0
    assert snap_capacity["maximum"] == settings.SHARESTORE_MAX_VOLUME_BYTES


def test_descriptions_and_expiry_declare_their_bounds(schema):
    for component in ("VolumeShareSnapshotCreateRequest", "VolumeShareBackupAddRequest"):
        assert request_properties(schema, component)["desc"]["maxLength"] == DESC_MAX_LENGTH
    expired = request_properties(schema, "VolumeShareBackupAddRequest")["expired_time"]
    assert (expired["minimum"], expired["maximum"]) == (0, MAX_EPOCH)


def test_paging_declares_its_bounds(schema):
    maximum = settings.SHARESTORE_MAX_PAGE_SIZE
    volume_list = request_properties(schema, "VolumeShareListRequest")
    backup_list = backup_list_parameters(schema)
    for fields in (volume_list, backup_list):
        assert fields["page_num"]["minimum"] == 0
        assert fields["page_size"]["minimum"] == 0
        assert fields["page_size"]["maximum"] == maximum


@pytest.mark.parametrize("field", ["filter_start_time", "filter_end_time"])
def test_backup_list_times_are_epoch_second_strings(schema, field):
    main, blank = alternatives(backup_list_parameters(schema)[field])
    pattern = re.compile(main["pattern"])
    assert main["type"] == "string"
    assert pattern.search("1700000000") and pattern.search("0")
    for refused in ["-1", "1.5", "1e9", "abc", "1" * 13]:
        assert not pattern.search(refused), refused
    assert blank == {"type": "string", "maxLength": 0}


def test_every_contract_operation_declares_the_envelope_and_its_errors(schema):
    operations = 0
    for path, methods in schema["paths"].items():
        if not path.startswith("/v1/volume/share/"):
            continue
        for method, operation in methods.items():
            operations += 1
            responses = operation["responses"]
            success = responses["200"]["content"]["application/json"]["schema"]["$ref"]
            envelope = schema["components"]["schemas"][success.rsplit("/", 1)[1]]
            assert {"scode", "desc", "message", "message_cn", "stack", "data"} <= set(envelope["properties"])
            for status in ("400", "401"):
                error = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert error.endswith("/ErrorEnvelope"), (path, method, status)
            if method == "post":
                assert list(operation["requestBody"]["content"]) == ["application/json"], path
            assert "415" not in responses, "the parser reads JSON whatever the Content-Type"
    assert operations >= 20
