"""TrytonSource against a real trytond: records created through Tryton's own RPC API, read back in full and
incrementally, changed, archived and deleted."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest

from connectors.source import Source, SourceError, SourceObjectMissing, SourceRecord, Watermark
from connectors.tryton import TrytonAuthenticationError, TrytonClient, TrytonSource, tryton_value
from tests.connectors.tryton_server import TrytonServer


@dataclass(frozen=True)
class Enterprise:
    """Ids of the records the tests created in Tryton."""

    currency: int
    company: int
    boss: int
    workers: tuple[int, int]
    supplier: int
    customer: int
    product: int
    purchase: int
    opportunity: int
    work_center: int
    production: int
    project: int
    timesheet_line: int


@pytest.fixture(scope="module")
def enterprise(tryton_client: TrytonClient) -> Enterprise:
    """A small manufacturer in Tryton, created the way a Tryton client would (RPC create with the user's context)."""
    c = tryton_client
    (currency,) = c.create(
        "currency.currency", [{"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2, "rounding": Decimal("0.01")}]
    )
    (company_party,) = c.create("party.party", [{"name": "Twin Manufacturing"}])
    (company,) = c.create("company.company", [{"party": company_party, "currency": currency}])
    c.write(
        "res.user",
        [c.search("res.user", [("login", "=", "admin")])[0]],
        {"companies": [("add", [company])], "company": company},
    )
    c.refresh_context()

    people = c.create("party.party", [{"name": n} for n in ("Alice Boss", "Bob Worker", "Carol Worker")])
    (boss,) = c.create("company.employee", [{"party": people[0], "company": company}])
    workers = c.create("company.employee", [{"party": p, "company": company, "supervisor": boss} for p in people[1:]])
    supplier, customer = c.create(
        "party.party",
        [
            {
                "name": "Steel Supplies Ltd",
                "addresses": [("create", [{"street": "1 Forge Road", "city": "Sheffield"}])],
            },
            {"name": "Big Customer Inc", "addresses": [("create", [{"street": "5 Main St", "city": "Boston"}])]},
        ],
    )
    (unit,) = c.search("product.uom", [("name", "=", "Unit")])
    (template,) = c.create(
        "product.template",
        [
            {
                "name": "Steel Bracket",
                "type": "goods",
                "default_uom": unit,
                "list_price": Decimal("12.50"),
                "purchasable": True,
                "purchase_uom": unit,
                "salable": True,
                "sale_uom": unit,
                "producible": True,
                "products": [("create", [{"suffix_code": "SB-1"}])],
            }
        ],
    )
    (product,) = c.search("product.product", [("template", "=", template)])
    (supplier_address,) = c.search("party.address", [("party", "=", supplier)])
    (purchase,) = c.create(
        "purchase.purchase",
        [
            {
                "company": company,
                "party": supplier,
                "invoice_address": supplier_address,
                "currency": currency,
                "purchase_date": dt.date(2024, 5, 1),
                "lines": [
                    (
                        "create",
                        [
                            {
                                "product": product,
                                "quantity": 100.0,
                                "unit": unit,
                                "unit_price": Decimal("3.2500"),
                                "description": "Brackets",
                            }
                        ],
                    )
                ],
            }
        ],
    )
    (opportunity,) = c.create(
        "sale.opportunity",
        [
            {
                "company": company,
                "party": customer,
                "description": "Framework deal",
                "amount": Decimal("50000"),
                "currency": currency,
                "employee": workers[0],
                "start_date": dt.date(2024, 6, 1),
                "conversion_probability": 0.4,
            }
        ],
    )
    (warehouse,) = c.search("stock.location", [("type", "=", "warehouse")])
    (production_location,) = c.search("stock.location", [("type", "=", "production")])
    (work_center,) = c.create(
        "production.work.center",
        [
            {
                "name": "Press Line 1",
                "company": company,
                "warehouse": warehouse,
                "cost_price": Decimal("45"),
                "cost_method": "cycle",
            }
        ],
    )
    (production,) = c.create(
        "production",
        [
            {
                "company": company,
                "warehouse": warehouse,
                "location": production_location,
                "product": product,
                "unit": unit,
                "quantity": 250.0,
                "work_center": work_center,
                "planned_date": dt.date(2024, 7, 1),
                "planned_start_date": dt.date(2024, 6, 28),
            }
        ],
    )
    (project,) = c.create(
        "project.work",
        [{"name": "Plant B retrofit", "company": company, "type": "project", "timesheet_available": True}],
    )
    (timesheet_work,) = c.read("project.work", [project], ["timesheet_works"])[0]["timesheet_works"]
    (timesheet_line,) = c.create(
        "timesheet.line",
        [
            {
                "company": company,
                "employee": workers[1],
                "work": timesheet_work,
                "date": dt.date(2024, 6, 3),
                "duration": dt.timedelta(hours=7, minutes=30),
                "description": "Wiring",
            }
        ],
    )
    return Enterprise(
        currency,
        company,
        boss,
        (workers[0], workers[1]),
        supplier,
        customer,
        product,
        purchase,
        opportunity,
        work_center,
        production,
        project,
        timesheet_line,
    )


def exact(plain: object, expected: object) -> object:
    """A plain value as the Decimal it stands for when a Decimal is expected (Numeric arrives as exact text)."""
    if isinstance(expected, Decimal):
        assert isinstance(plain, str)
        return Decimal(plain)
    if isinstance(expected, list):
        assert isinstance(plain, list)
        return [exact(p, e) for p, e in zip(plain, expected, strict=True)]
    return plain


def read_all(source: Source, since: Watermark | None = None) -> dict[str, SourceRecord]:
    """Every record a read yields, by key, failing on a key yielded twice."""
    records: dict[str, SourceRecord] = {}
    for batch in source.read(since):
        for record in batch:
            assert record.key not in records, f"{record.key} yielded twice"
            records[record.key] = record
    return records


def newest(records: dict[str, SourceRecord]) -> Watermark:
    """The watermark a sync engine would store after these records."""
    return Watermark(max(r.watermark for r in records.values() if r.watermark is not None))


# --- the running server --------------------------------------------------------------------------------------


def test_tryton_source_satisfies_the_source_protocol(tryton_client: TrytonClient) -> None:
    source = TrytonSource(tryton_client, "party.party", ["name"])
    assert isinstance(source, Source)
    assert source.name == "tryton:party.party"
    assert re.fullmatch(r"\d+\.\d+", tryton_client.server_version())


def test_employees_are_read_with_their_supervisor(tryton_client: TrytonClient, enterprise: Enterprise) -> None:
    source = TrytonSource(
        tryton_client,
        "company.employee",
        ["party.rec_name", "supervisor", "subordinates", "company"],
        domain=[("company", "=", enterprise.company)],
    )
    records = read_all(source)
    assert set(records) == {str(enterprise.boss), *map(str, enterprise.workers)}
    boss = records[str(enterprise.boss)].fields
    assert boss == {
        "party.rec_name": "Alice Boss",
        "supervisor": None,
        "subordinates": sorted(enterprise.workers),
        "company": enterprise.company,
    }
    for worker in enterprise.workers:
        assert records[str(worker)].fields["supervisor"] == enterprise.boss
    assert records[str(enterprise.workers[1])].fields["party.rec_name"] == "Carol Worker"


@pytest.mark.parametrize(
    ("model", "attribute", "fields", "expected"),
    [
        (
            "company.company",
            "company",
            ["party.rec_name", "currency.code"],
            {"party.rec_name": "Twin Manufacturing", "currency.code": "EUR"},
        ),
        (
            "party.party",
            "supplier",
            ["name", "addresses.city", "active"],
            {"name": "Steel Supplies Ltd", "addresses.city": ["Sheffield"], "active": True},
        ),
        (
            "product.product",
            "product",
            ["code", "rec_name", "template.list_price", "template.type"],
            {
                "code": "SB-1",
                "rec_name": "[SB-1] Steel Bracket",
                "template.list_price": Decimal("12.5"),
                "template.type": "goods",
            },
        ),
        (
            "purchase.purchase",
            "purchase",
            ["party.rec_name", "state", "purchase_date", "total_amount", "lines.quantity", "lines.unit_price"],
            {
                "party.rec_name": "Steel Supplies Ltd",
                "state": "draft",
                "purchase_date": "2024-05-01",
                "total_amount": Decimal("325"),
                "lines.quantity": [100.0],
                "lines.unit_price": [Decimal("3.25")],
            },
        ),
        (
            "sale.opportunity",
            "opportunity",
            ["party.rec_name", "description", "amount", "state", "conversion_probability", "start_date"],
            {
                "party.rec_name": "Big Customer Inc",
                "description": "Framework deal",
                "amount": Decimal("50000"),
                "state": "lead",
                "conversion_probability": 0.4,
                "start_date": "2024-06-01",
            },
        ),
        (
            "production.work.center",
            "work_center",
            ["name", "cost_price", "cost_method", "warehouse.type"],
            {
                "name": "Press Line 1",
                "cost_price": Decimal("45"),
                "cost_method": "cycle",
                "warehouse.type": "warehouse",
            },
        ),
        (
            "production",
            "production",
            ["product.code", "quantity", "state", "planned_date", "work_center.name"],
            {
                "product.code": "SB-1",
                "quantity": 250.0,
                "state": "draft",
                "planned_date": "2024-07-01",
                "work_center.name": "Press Line 1",
            },
        ),
        (
            "project.work",
            "project",
            ["name", "type", "timesheet_duration"],
            {"name": "Plant B retrofit", "type": "project", "timesheet_duration": "PT7H30M"},
        ),
        (
            "timesheet.line",
            "timesheet_line",
            ["employee.party.rec_name", "duration", "date", "work.origin"],
            {"employee.party.rec_name": "Carol Worker", "duration": "PT7H30M", "date": "2024-06-03"},
        ),
    ],
)
def test_each_business_area_reads_as_plain_values(
    tryton_client: TrytonClient,
    enterprise: Enterprise,
    model: str,
    attribute: str,
    fields: list[str],
    expected: dict[str, object],
) -> None:
    key = str(getattr(enterprise, attribute))
    records = read_all(TrytonSource(tryton_client, model, fields))
    assert key in records
    record = records[key]
    assert {name: exact(record.fields[name], expected[name]) for name in expected} == expected
    assert set(record.fields) == set(fields)
    assert json.loads(json.dumps(record.fields)) == record.fields  # plain JSON, nothing Tryton-specific left
    assert record.watermark is not None and record.watermark.tzinfo == dt.UTC
    assert record.deleted is False


def test_timesheet_line_points_at_the_project(tryton_client: TrytonClient, enterprise: Enterprise) -> None:
    records = read_all(TrytonSource(tryton_client, "timesheet.line", ["work.origin", "employee"]))
    assert records[str(enterprise.timesheet_line)].fields == {
        "work.origin": f"project.work,{enterprise.project}",
        "employee": enterprise.workers[1],
    }


def test_full_read_pages_by_ascending_id_and_matches_all_keys(
    tryton_client: TrytonClient, enterprise: Enterprise
) -> None:
    source = TrytonSource(tryton_client, "party.party", ["name"], page_size=2, key_page_size=3)
    batches = list(source.read(None))
    keys = [record.key for batch in batches for record in batch]
    assert [len(batch) for batch in batches] == [2] * (len(keys) // 2) + [len(keys) % 2] * (len(keys) % 2)
    assert len(keys) >= 6
    assert [int(k) for k in keys] == sorted(int(k) for k in keys)
    assert len(keys) == len(set(keys))
    assert set(keys) == source.all_keys()
    assert {str(enterprise.supplier), str(enterprise.customer)} <= set(keys)


def test_incremental_read_returns_only_what_changed_since_the_watermark(
    tryton_client: TrytonClient, enterprise: Enterprise
) -> None:
    source = TrytonSource(tryton_client, "party.party", ["name"])
    before = read_all(source)
    mark = newest(before)
    assert read_all(source, mark) == {}

    tryton_client.write("party.party", [enterprise.customer], {"name": "Big Customer Group"})
    changed = read_all(source, mark)
    assert list(changed) == [str(enterprise.customer)]
    assert changed[str(enterprise.customer)].fields == {"name": "Big Customer Group"}
    assert changed[str(enterprise.customer)].watermark > mark.value


def test_never_written_record_is_found_by_its_create_date(tryton_client: TrytonClient, enterprise: Enterprise) -> None:
    source = TrytonSource(tryton_client, "company.employee", ["party.rec_name", "supervisor"])
    mark = newest(read_all(source))
    (party,) = tryton_client.create("party.party", [{"name": "Dan Newhire"}])
    (hire,) = tryton_client.create(
        "company.employee", [{"party": party, "company": enterprise.company, "supervisor": enterprise.boss}]
    )
    (raw,) = tryton_client.read("company.employee", [hire], ["write_date", "create_date"])
    assert raw["write_date"] is None and raw["create_date"] is not None
    fresh = read_all(source, mark)
    assert list(fresh) == [str(hire)]
    assert fresh[str(hire)].fields == {"party.rec_name": "Dan Newhire", "supervisor": enterprise.boss}
    assert fresh[str(hire)].watermark == raw["create_date"].replace(tzinfo=dt.UTC)


def test_overlap_rereads_recent_changes(tryton_client: TrytonClient, enterprise: Enterprise) -> None:
    strict = TrytonSource(tryton_client, "sale.opportunity", ["description"])
    mark = newest(read_all(strict))
    overlapping = TrytonSource(tryton_client, "sale.opportunity", ["description"], overlap=dt.timedelta(days=1))
    assert read_all(strict, mark) == {}
    assert str(enterprise.opportunity) in read_all(overlapping, mark)


def test_deleted_record_disappears_from_all_keys(tryton_client: TrytonClient, enterprise: Enterprise) -> None:
    source = TrytonSource(tryton_client, "party.party", ["name"])
    (doomed,) = tryton_client.create("party.party", [{"name": "Short-lived Ltd"}])
    assert str(doomed) in source.all_keys()
    tryton_client.delete("party.party", [doomed])
    keys = source.all_keys()
    assert str(doomed) not in keys
    assert str(enterprise.supplier) in keys
    assert str(doomed) not in read_all(source)


def test_archived_records_are_still_present_unless_excluded(
    tryton_client: TrytonClient, enterprise: Enterprise
) -> None:
    (archived,) = tryton_client.create("party.party", [{"name": "Dormant Supplier"}])
    tryton_client.write("party.party", [archived], {"active": False})
    source = TrytonSource(tryton_client, "party.party", ["name", "active"])
    assert str(archived) in source.all_keys()
    assert read_all(source)[str(archived)].fields == {"name": "Dormant Supplier", "active": False}
    active_only = TrytonSource(tryton_client, "party.party", ["name"], include_inactive=False)
    assert str(archived) not in active_only.all_keys()
    assert str(enterprise.supplier) in active_only.all_keys()


def test_unknown_field_is_refused_naming_model_and_field(tryton_client: TrytonClient) -> None:
    source = TrytonSource(tryton_client, "party.party", ["name", "shoe_size"])
    with pytest.raises(SourceError, match=r"party\.party\.fields_get: unknown field\(s\) shoe_size") as caught:
        read_all(source)
    assert caught.value.model == "party.party" and caught.value.method == "fields_get"


def test_unknown_model_is_refused_naming_the_model(tryton_client: TrytonClient) -> None:
    with pytest.raises(SourceObjectMissing, match=r"unknown model 'hr\.nothing'"):
        read_all(TrytonSource(tryton_client, "hr.nothing", ["name"]))


def test_watermark_field_must_be_a_datetime(tryton_client: TrytonClient) -> None:
    with pytest.raises(SourceError, match="watermark field 'name' is a char field"):
        read_all(TrytonSource(tryton_client, "party.party", ["name"], watermark_field="name"))


def test_server_side_error_names_model_and_method(tryton_client: TrytonClient) -> None:
    with pytest.raises(SourceError) as caught:
        tryton_client.create("company.employee", [{"company": None}])
    assert caught.value.model == "company.employee" and caught.value.method == "create"
    assert str(caught.value).startswith("company.employee.create: Tryton reported an error")


def test_wrong_password_is_refused_without_revealing_it(tryton_server: TrytonServer) -> None:
    secret = "not-the-password-4711"
    client = TrytonClient(tryton_server.url, tryton_server.database, tryton_server.username, secret)
    with pytest.raises(TrytonAuthenticationError) as caught:
        client.login()
    client.close()
    assert "refused the login of user 'admin'" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(client)


def test_unknown_database_is_reported(tryton_server: TrytonServer) -> None:
    with (
        TrytonClient(tryton_server.url, "nosuchdb", tryton_server.username, tryton_server.password) as client,
        pytest.raises(SourceError, match="database 'nosuchdb' not found"),
    ):
        client.login()


def test_revoked_session_logs_in_again(
    tryton_server: TrytonServer, tryton_client: TrytonClient, enterprise: Enterprise
) -> None:
    password = "reader-pass-8472"
    tryton_client.create("res.user", [{"name": "Reader", "login": "reader", "password": password}])
    with TrytonClient(tryton_server.url, tryton_server.database, "reader", password) as reader:
        reader.login()
        assert reader.read("party.party", [enterprise.supplier], ["name"])[0]["name"] == "Steel Supplies Ltd"
        # Setting a user's password ends all their sessions on the server, as an expiry would.
        (reader_id,) = tryton_client.search("res.user", [("login", "=", "reader")])
        tryton_client.write("res.user", [reader_id], {"password": password})
        assert reader.read("party.party", [enterprise.customer], ["id"]) == [{"id": enterprise.customer}]


def test_unreachable_server_is_a_source_error() -> None:
    with (
        TrytonClient("http://127.0.0.1:9", "twin", "admin", "secret-pw", timeout=2.0) as client,
        pytest.raises(SourceError, match=r"cannot reach Tryton at http://127\.0\.0\.1:9") as caught,
    ):
        client.login()
    assert "secret-pw" not in str(caught.value)


# --- value conversion without a server -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 2, 29, 13, 5, 7, 120000), "2024-02-29T13:05:07.120000+00:00"),
        (dt.time(8, 30), "08:30:00"),
        (dt.timedelta(hours=7, minutes=30), "PT7H30M"),
        (dt.timedelta(days=1, hours=2), "P1DT2H"),
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(minutes=-15), "-PT15M"),
        (dt.timedelta(seconds=1.5), "PT1.5S"),
        (b"\x00\xff", "AP8="),
        ({"size": Decimal("2.0"), "tags": [dt.date(2024, 1, 1)]}, {"size": "2.0", "tags": ["2024-01-01"]}),
        (None, None),
        (False, False),
        ([1, 2], [1, 2]),
    ],
)
def test_tryton_values_become_plain_json(value: object, plain: object) -> None:
    assert tryton_value(value) == plain


def test_watermark_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        Watermark(dt.datetime(2024, 1, 1))
    cet = dt.timezone(dt.timedelta(hours=1))
    assert Watermark(dt.datetime(2024, 1, 1, 1, tzinfo=cet)).value == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_source_refuses_an_empty_field_list() -> None:
    client = TrytonClient("http://127.0.0.1:9", "twin", "admin", "pw")
    with pytest.raises(ValueError, match="needs a non-empty list of field names"):
        TrytonSource(client, "party.party", [])
    client.close()
