"""The sample enterprise: a deterministic, synthetic manufacturer's HR, CRM and ERP systems as SQLite and files.

`generate_sample(out_dir, size, seed)` writes `hr.sqlite`, `crm.sqlite`, `erp.sqlite` (tables in
`connectors.sample.tables`), the file-source exports `erp_products.csv`, `crm_accounts.xlsx`,
`telemetry_sample.parquet`, `hr_skills.json`, and `manifest.json`. The same seed and size always give the same
table contents. `mutate_sample(out_dir, fraction, seed)` then edits about `fraction` of each system's rows
(updates with a newer `updated_at`, inserts, deletes) for incremental-sync tests and benchmarks.

All people, companies and contact data are invented from small built-in word lists; e-mail domains use the
reserved `.example` top-level domain.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import MetaData
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from connectors.errors import ConnectorError
from connectors.sample.demand import DemandHistory, DemandShape, generate_demand_history, line_factor
from connectors.sample.tables import CRM, ERP, HR, SYSTEMS

SampleSize = Literal["tiny", "small", "medium", "large"]
SIZE_PEOPLE: dict[str, int] = {"tiny": 50, "small": 300, "medium": 5_000, "large": 50_000}
"""Named sizes -> number of employees; every other count scales from it ("large" is about 1M source rows)."""

MIN_PEOPLE = 40
MAX_PEOPLE = 2_000_000
AS_OF = date(2025, 6, 30)
"""The sample's "today": histories cover the year before it, open items lie around it."""
COMPANY_NAME = "Halvorsen Precision Works"
COMPANY_DOMAIN = "halvorsen-precision.example"
INTERNAL_ACCOUNT_ID = "ACC000001"
CURRENCY = "EUR"


class SampleEnterpriseError(ConnectorError, ValueError):
    """The sample enterprise cannot be generated or mutated with the given input."""


# ------------------------------------------------------------------------------------------- public types
@dataclass(frozen=True)
class SampleManifest:
    """What `generate_sample` wrote: paths, row counts per table ("system.table"), seed and size."""

    out_dir: Path
    size: str
    people: int
    seed: int
    as_of: date
    databases: dict[str, Path]
    files: dict[str, Path]
    skipped_files: dict[str, str]
    row_counts: dict[str, int]
    file_rows: dict[str, int]
    identity_overlap: int
    single_sourced_materials: tuple[str, ...]

    @property
    def total_rows(self) -> int:
        """Rows over all tables of the three databases (files not counted)."""
        return sum(self.row_counts.values())

    def to_json(self) -> str:
        """The manifest as JSON with paths relative to `out_dir`."""
        body = {
            "size": self.size,
            "people": self.people,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "databases": {k: v.name for k, v in self.databases.items()},
            "files": {k: v.name for k, v in self.files.items()},
            "skipped_files": self.skipped_files,
            "row_counts": self.row_counts,
            "file_rows": self.file_rows,
            "identity_overlap": self.identity_overlap,
            "single_sourced_materials": list(self.single_sourced_materials),
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def read(cls, out_dir: Path) -> SampleManifest:
        """The manifest of a sample previously generated into `out_dir`."""
        path = Path(out_dir) / "manifest.json"
        if not path.is_file():
            raise SampleEnterpriseError(f"{out_dir}: no sample enterprise here (manifest.json missing)")
        body = json.loads(path.read_text())
        return cls(
            out_dir=Path(out_dir),
            size=body["size"],
            people=body["people"],
            seed=body["seed"],
            as_of=date.fromisoformat(body["as_of"]),
            databases={k: Path(out_dir) / v for k, v in body["databases"].items()},
            files={k: Path(out_dir) / v for k, v in body["files"].items()},
            skipped_files=body["skipped_files"],
            row_counts=body["row_counts"],
            file_rows=body["file_rows"],
            identity_overlap=body["identity_overlap"],
            single_sourced_materials=tuple(body["single_sourced_materials"]),
        )


@dataclass(frozen=True)
class TableMutation:
    """How one table changed in a `mutate_sample` call."""

    table: str
    rows_before: int
    updated: int
    inserted: int
    deleted: int

    @property
    def changed(self) -> int:
        """Rows updated, inserted or deleted."""
        return self.updated + self.inserted + self.deleted


@dataclass(frozen=True)
class MutationSummary:
    """What `mutate_sample` changed, per table ("system.table"), and the watermark it stamped per system."""

    out_dir: Path
    fraction: float
    seed: int
    watermarks: dict[str, str]
    tables: dict[str, TableMutation]

    def changed_fraction(self, system: str) -> float:
        """Changed rows over the rows the system had before the mutation."""
        parts = [t for name, t in self.tables.items() if name.startswith(f"{system}.")]
        before = sum(t.rows_before for t in parts)
        return sum(t.changed for t in parts) / before if before else 0.0

    @property
    def changed_rows(self) -> int:
        """Rows updated, inserted or deleted over all systems."""
        return sum(t.changed for t in self.tables.values())


# --------------------------------------------------------------------------------------------- vocabulary
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Klara",
    "Lukas",
    "Maria",
    "Noah",
    "Olivia",
    "Paul",
    "Rosa",
    "Samuel",
    "Tara",
    "Uwe",
    "Vera",
    "William",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Amir",
    "Bianca",
    "Chen",
    "Daria",
    "Emil",
    "Fatima",
    "Georg",
    "Hanna",
    "Ivan",
    "Julia",
    "Kenji",
    "Lena",
    "Mateo",
    "Nina",
    "Oskar",
    "Priya",
    "Rafael",
    "Sofia",
    "Tomas",
    "Ulla",
    "Viktor",
    "Wen",
    "Yara",
    "Aiko",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Eva",
    "Finn",
    "Giulia",
    "Henrik",
    "Isabel",
    "Jakub",
    "Katarina",
    "Leon",
    "Mila",
    "Nils",
    "Omar",
    "Petra",
    "Quentin",
    "Ruth",
    "Stefan",
    "Tereza",
    "Valentina",
    "Wojciech",
    "Ximena",
    "Yannick",
    "Zofia",
    "Adriana",
    "Bastian",
    "Clara",
    "Diego",
    "Emma",
    "Fabian",
    "Helena",
    "Igor",
    "Jana",
    "Karl",
    "Lucia",
    "Marek",
    "Nora",
    "Pablo",
    "Rania",
    "Simon",
    "Theo",
    "Marta",
    "Lars",
    "Ingrid",
    "Aleksandra",
    "Marco",
    "Sara",
    "Tobias",
    "Alice",
    "Mohammed",
]
LAST_NAMES = [
    "Schmidt",
    "Novak",
    "Rossi",
    "Garcia",
    "Nielsen",
    "Kowalski",
    "Bauer",
    "Dubois",
    "Silva",
    "Jensen",
    "Horvat",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schulz",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krueger",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Lehmann",
    "Koehler",
    "Maier",
    "Vogel",
    "Jung",
    "Frank",
    "Berger",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Moeller",
    "Weiss",
    "Jahn",
    "Roth",
    "Beck",
    "Lorenz",
    "Baumann",
    "Franke",
    "Albrecht",
    "Ludwig",
    "Winter",
    "Kraus",
    "Martin",
    "Dvorak",
    "Svoboda",
    "Cerny",
    "Prochazka",
    "Kucera",
    "Horak",
    "Nemec",
    "Pokorny",
    "Pospisil",
    "Hajek",
    "Jelinek",
    "Ruzicka",
    "Benes",
    "Fiala",
    "Sedlacek",
    "Dolezal",
    "Zeman",
    "Kolar",
    "Navratil",
    "Cermak",
    "Bianchi",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Gallo",
    "Conti",
    "DeLuca",
    "Costa",
    "Giordano",
    "Mancini",
    "Rizzo",
    "Lombardi",
    "Moretti",
    "Lopez",
    "Martinez",
    "Sanchez",
    "Perez",
    "Gomez",
    "Fernandez",
    "Ruiz",
    "Diaz",
    "Moreno",
    "Alvarez",
    "Romero",
    "Andersen",
    "Pedersen",
    "Hansen",
    "Larsen",
    "Olsen",
    "Berg",
    "Lund",
    "Holm",
    "Dahl",
    "Eriksson",
    "Lindqvist",
    "Nyberg",
    "Smith",
    "Taylor",
    "Brown",
    "Wilson",
    "Evans",
    "Walker",
    "Wright",
    "Thompson",
    "Khan",
    "Patel",
    "Singh",
    "Tanaka",
    "Sato",
    "Kim",
    "Park",
    "Nguyen",
    "Wang",
    "Li",
    "Zhang",
    "Okafor",
    "Mensah",
    "Haddad",
    "Yilmaz",
    "Demir",
    "Kaya",
]

# country -> (legal form, cities with latitude/longitude, phone prefix)
COUNTRIES: dict[str, tuple[str, tuple[tuple[str, float, float], ...]]] = {
    "DE": (
        "GmbH",
        (
            ("Stuttgart", 48.78, 9.18),
            ("Munich", 48.14, 11.58),
            ("Hamburg", 53.55, 9.99),
            ("Cologne", 50.94, 6.96),
            ("Leipzig", 51.34, 12.37),
        ),
    ),
    "CZ": ("s.r.o.", (("Brno", 49.20, 16.61), ("Prague", 50.08, 14.44), ("Ostrava", 49.82, 18.26))),
    "PL": ("Sp. z o.o.", (("Wroclaw", 51.11, 17.04), ("Poznan", 52.41, 16.93))),
    "AT": ("GmbH", (("Linz", 48.31, 14.29), ("Vienna", 48.21, 16.37))),
    "IT": ("S.p.A.", (("Turin", 45.07, 7.69), ("Milan", 45.46, 9.19))),
    "ES": ("S.L.", (("Bilbao", 43.26, -2.93), ("Valencia", 39.47, -0.38))),
    "FR": ("SAS", (("Lyon", 45.76, 4.84), ("Toulouse", 43.60, 1.44))),
    "NL": ("B.V.", (("Eindhoven", 51.44, 5.48), ("Rotterdam", 51.92, 4.48))),
    "SE": ("AB", (("Gothenburg", 57.71, 11.97),)),
    "DK": ("A/S", (("Aarhus", 56.16, 10.20),)),
    "CH": ("AG", (("Zurich", 47.38, 8.54), ("Basel", 47.56, 7.59))),
    "GB": ("Ltd", (("Birmingham", 52.49, -1.89), ("Manchester", 53.48, -2.24))),
    "US": ("Inc.", (("Detroit", 42.33, -83.05), ("Houston", 29.76, -95.37), ("Chicago", 41.88, -87.63))),
    "CN": ("Co., Ltd.", (("Suzhou", 31.30, 120.59),)),
    "JP": ("K.K.", (("Nagoya", 35.18, 136.91),)),
    "BR": ("Ltda.", (("Sao Paulo", -23.55, -46.63),)),
}
COUNTRY_CODES = tuple(COUNTRIES)
COUNTRY_WEIGHTS = np.array([24, 8, 6, 6, 7, 5, 7, 5, 3, 2, 4, 6, 9, 4, 2, 2], dtype=float)
PLANT_LOCATIONS = (
    ("DE", 0),
    ("CZ", 0),
    ("PL", 0),
    ("AT", 0),
    ("IT", 0),
    ("ES", 0),
    ("US", 0),
    ("CN", 0),
    ("FR", 0),
    ("GB", 0),
    ("DE", 4),
    ("CZ", 2),
    ("US", 1),
    ("BR", 0),
    ("JP", 0),
    ("NL", 0),
)

COMPANY_PREFIXES = (
    "Atlas",
    "Nordic",
    "Alpen",
    "Vector",
    "Summit",
    "Meridian",
    "Granite",
    "Iron",
    "Cobalt",
    "Polar",
    "Falcon",
    "Orion",
    "Lumen",
    "Sterling",
    "Apex",
    "Harbor",
    "Crest",
    "Titan",
    "Cedar",
    "Delta",
    "Quantum",
    "Vertex",
    "Horizon",
    "Silver",
    "Redwood",
    "Keystone",
    "Pioneer",
    "Triton",
    "Aurora",
    "Basalt",
    "Summitview",
    "Northgate",
    "Eastbrook",
    "Westfield",
    "Southport",
    "Highland",
    "Riverside",
    "Oakridge",
    "Sunvale",
)
COMPANY_SECTORS = (
    "Mechanics",
    "Energy",
    "Foods",
    "Logistics",
    "Mining",
    "Automotive",
    "Construction",
    "Water Systems",
    "Chemicals",
    "Agritech",
    "Packaging",
    "Pharma",
    "Paper",
    "Textiles",
    "Shipbuilding",
    "Rail",
    "Steelworks",
    "Utilities",
    "Brewing",
    "Plastics",
    "Aerospace",
    "Cement",
    "Recycling",
    "Marine",
    "Hydro",
)
INDUSTRIES = (
    "Automotive",
    "Food & Beverage",
    "Chemicals",
    "Energy",
    "Mining",
    "Water & Wastewater",
    "Construction",
    "Logistics",
    "Pharmaceuticals",
    "Pulp & Paper",
    "Marine",
    "Machinery",
)
CONTACT_TITLES = (
    "Purchasing Manager",
    "Plant Engineer",
    "Maintenance Manager",
    "Technical Director",
    "Buyer",
    "Operations Manager",
    "Project Engineer",
    "CEO",
    "Procurement Lead",
    "Production Manager",
)
OPPORTUNITY_KINDS = ("retrofit", "expansion", "framework agreement", "replacement", "new line")
STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
STAGE_PROBABILITY = {
    "prospecting": 0.1,
    "qualification": 0.2,
    "proposal": 0.5,
    "negotiation": 0.75,
    "closed_won": 1.0,
    "closed_lost": 0.0,
}
CASE_ISSUES = (
    "Leak reported",
    "Noise during operation",
    "Delivery delayed",
    "Wrong part delivered",
    "Warranty claim",
    "Invoice query",
    "Commissioning support",
    "Spare part request",
    "Performance below spec",
    "Documentation request",
)
CASE_PRIORITIES = ("low", "medium", "high", "critical")
CASE_STATUSES = ("new", "open", "pending", "closed")
FAILURE_MODES = (
    "mechanical wear",
    "electrical fault",
    "hydraulic leak",
    "sensor failure",
    "software fault",
    "tooling breakage",
    "overheating",
)


@dataclass(frozen=True)
class _Position:
    title: str
    job_family: str
    grade: int
    is_manager: bool = False


POSITIONS = (
    _Position("Chief Executive Officer", "Executive", 10, True),
    _Position("Vice President", "Executive", 9, True),
    _Position("Plant Manager", "Management", 8, True),
    _Position("Department Head", "Management", 8, True),
    _Position("Team Lead", "Management", 6, True),
    _Position("Machine Operator", "Production", 2),
    _Position("CNC Machinist", "Production", 4),
    _Position("Assembly Technician", "Production", 3),
    _Position("Welder", "Production", 4),
    _Position("Painter", "Production", 3),
    _Position("Quality Inspector", "Quality", 4),
    _Position("Maintenance Technician", "Maintenance", 5),
    _Position("Warehouse Operator", "Logistics", 2),
    _Position("Buyer", "Procurement", 5),
    _Position("Logistics Coordinator", "Logistics", 4),
    _Position("Production Planner", "Planning", 5),
    _Position("Sales Representative", "Sales", 5),
    _Position("Account Manager", "Sales", 6),
    _Position("Marketing Specialist", "Marketing", 5),
    _Position("Customer Service Agent", "Service", 3),
    _Position("Design Engineer", "Engineering", 6),
    _Position("Process Engineer", "Engineering", 6),
    _Position("Quality Engineer", "Quality", 6),
    _Position("Test Engineer", "Engineering", 5),
    _Position("Accountant", "Finance", 5),
    _Position("Controller", "Finance", 6),
    _Position("HR Generalist", "Human Resources", 5),
    _Position("Recruiter", "Human Resources", 4),
    _Position("IT Support Specialist", "IT", 4),
    _Position("Software Engineer", "IT", 6),
    _Position("Data Analyst", "IT", 6),
    _Position("Legal Counsel", "Legal", 7),
    _Position("Compliance Officer", "Legal", 6),
)
POSITION_INDEX = {p.title: i for i, p in enumerate(POSITIONS)}

SKILLS: tuple[tuple[str, str], ...] = (
    ("CNC Programming", "Machining"),
    ("Lathe Operation", "Machining"),
    ("Milling", "Machining"),
    ("MIG Welding", "Welding"),
    ("TIG Welding", "Welding"),
    ("Spray Painting", "Surface Treatment"),
    ("Mechanical Assembly", "Assembly"),
    ("Electrical Assembly", "Assembly"),
    ("Hydraulics", "Technical"),
    ("Pneumatics", "Technical"),
    ("PLC Programming", "Automation"),
    ("Preventive Maintenance", "Maintenance"),
    ("Electrical Troubleshooting", "Maintenance"),
    ("Forklift Operation", "Logistics"),
    ("Inventory Management", "Logistics"),
    ("Quality Inspection", "Quality"),
    ("Metrology", "Quality"),
    ("Six Sigma", "Quality"),
    ("Lean Manufacturing", "Operations"),
    ("ISO 9001 Auditing", "Quality"),
    ("Negotiation", "Commercial"),
    ("Strategic Sourcing", "Procurement"),
    ("Production Scheduling", "Planning"),
    ("Key Account Management", "Sales"),
    ("Technical Sales", "Sales"),
    ("Market Analysis", "Marketing"),
    ("Customer Support", "Service"),
    ("CAD Design", "Engineering"),
    ("FEM Simulation", "Engineering"),
    ("Test Automation", "Engineering"),
    ("Financial Accounting", "Finance"),
    ("Controlling", "Finance"),
    ("Recruiting", "Human Resources"),
    ("Labour Law", "Legal"),
    ("Network Administration", "IT"),
    ("Python Programming", "IT"),
    ("Data Analysis", "IT"),
    ("Contract Law", "Legal"),
    ("Data Protection", "Legal"),
    ("Project Management", "Management"),
    ("Leadership", "Management"),
    ("English", "Language"),
    ("German", "Language"),
)
SKILL_INDEX = {name: i for i, (name, _) in enumerate(SKILLS)}
SKILL_CATEGORIES = tuple(sorted({c for _, c in SKILLS}))
GENERIC_SKILLS = ("Project Management", "English", "German", "Lean Manufacturing", "Six Sigma")
MANAGER_SKILLS = ("Leadership", "Project Management", "Negotiation", "English", "German", "Controlling")


@dataclass(frozen=True)
class _TeamTemplate:
    name: str
    positions: tuple[str, ...]
    skills: tuple[str, ...]
    weight: float = 1.0


PLANT_TEAMS = (
    _TeamTemplate(
        "Assembly",
        ("Assembly Technician", "Machine Operator"),
        ("Mechanical Assembly", "Electrical Assembly", "Hydraulics", "Pneumatics"),
        0.28,
    ),
    _TeamTemplate(
        "Machining",
        ("CNC Machinist", "Machine Operator"),
        ("CNC Programming", "Lathe Operation", "Milling", "Metrology"),
        0.22,
    ),
    _TeamTemplate(
        "Maintenance",
        ("Maintenance Technician",),
        ("Preventive Maintenance", "Electrical Troubleshooting", "Hydraulics", "PLC Programming"),
        0.10,
    ),
    _TeamTemplate(
        "Quality Control",
        ("Quality Inspector",),
        ("Quality Inspection", "Metrology", "ISO 9001 Auditing", "Six Sigma"),
        0.10,
    ),
    _TeamTemplate("Warehouse", ("Warehouse Operator",), ("Forklift Operation", "Inventory Management"), 0.13),
    _TeamTemplate("Welding", ("Welder",), ("MIG Welding", "TIG Welding", "Metrology"), 0.10),
    _TeamTemplate("Painting", ("Painter",), ("Spray Painting", "Quality Inspection"), 0.07),
)


def _teams(names: str, positions: tuple[str, ...], skills: tuple[str, ...]) -> tuple[_TeamTemplate, ...]:
    """Team templates sharing positions and skills, one per '|'-separated name."""
    return tuple(_TeamTemplate(n, positions, skills) for n in names.split("|"))


# division -> (share of headcount, departments with their teams); plants are generated for Manufacturing
DIVISIONS: tuple[tuple[str, float, tuple[tuple[str, tuple[_TeamTemplate, ...]], ...]], ...] = (
    ("Manufacturing", 0.55, ()),
    (
        "Supply Chain",
        0.10,
        (
            (
                "Procurement",
                _teams(
                    "Strategic Sourcing|Operational Purchasing",
                    ("Buyer",),
                    ("Negotiation", "Strategic Sourcing", "Inventory Management"),
                ),
            ),
            (
                "Logistics",
                _teams(
                    "Inbound Logistics|Outbound Logistics",
                    ("Logistics Coordinator",),
                    ("Inventory Management", "Forklift Operation", "Lean Manufacturing"),
                ),
            ),
            (
                "Production Planning",
                _teams(
                    "Master Planning|Shop Floor Scheduling",
                    ("Production Planner",),
                    ("Production Scheduling", "Lean Manufacturing", "Data Analysis"),
                ),
            ),
        ),
    ),
    (
        "Sales & Marketing",
        0.12,
        (
            (
                "Sales Europe",
                _teams(
                    "DACH|Nordics|UK & Ireland|Southern Europe|Central & Eastern Europe",
                    ("Account Manager", "Sales Representative"),
                    ("Key Account Management", "Technical Sales", "Negotiation"),
                ),
            ),
            (
                "Customer Service",
                _teams(
                    "Service Desk|Field Service Coordination",
                    ("Customer Service Agent",),
                    ("Customer Support", "Technical Sales"),
                ),
            ),
            (
                "Sales International",
                _teams(
                    "Americas|Asia-Pacific",
                    ("Account Manager", "Sales Representative"),
                    ("Key Account Management", "Technical Sales", "Negotiation"),
                ),
            ),
            (
                "Marketing",
                _teams(
                    "Product Marketing|Digital Marketing",
                    ("Marketing Specialist",),
                    ("Market Analysis", "Data Analysis"),
                ),
            ),
        ),
    ),
    (
        "Engineering",
        0.10,
        (
            (
                "Product Development",
                _teams(
                    "Mechanical Design|Electronics Design",
                    ("Design Engineer",),
                    ("CAD Design", "FEM Simulation", "PLC Programming"),
                ),
            ),
            (
                "Process Engineering",
                _teams(
                    "Industrial Engineering|Automation",
                    ("Process Engineer",),
                    ("Lean Manufacturing", "PLC Programming", "Six Sigma"),
                ),
            ),
            (
                "Quality Engineering",
                _teams(
                    "Supplier Quality|Product Quality",
                    ("Quality Engineer",),
                    ("ISO 9001 Auditing", "Six Sigma", "Metrology"),
                ),
            ),
            ("Test Lab", _teams("Test Lab", ("Test Engineer",), ("Test Automation", "Metrology", "Hydraulics"))),
        ),
    ),
    (
        "Corporate Services",
        0.13,
        (
            (
                "Finance",
                _teams(
                    "Accounting|Controlling",
                    ("Accountant", "Controller"),
                    ("Financial Accounting", "Controlling", "Data Analysis"),
                ),
            ),
            (
                "Human Resources",
                _teams(
                    "HR Operations|Talent Acquisition", ("HR Generalist", "Recruiter"), ("Recruiting", "Labour Law")
                ),
            ),
            (
                "IT",
                _teams(
                    "IT Service Desk|Business Applications|Data & Analytics",
                    ("IT Support Specialist", "Software Engineer", "Data Analyst"),
                    ("Network Administration", "Python Programming", "Data Analysis"),
                ),
            ),
            (
                "Legal & Compliance",
                _teams(
                    "Legal|Compliance",
                    ("Legal Counsel", "Compliance Officer"),
                    ("Contract Law", "Data Protection", "Labour Law"),
                ),
            ),
        ),
    ),
)
SALES_DIVISION = [name for name, _, _ in DIVISIONS].index("Sales & Marketing")


@dataclass(frozen=True)
class _ProductLine:
    name: str
    sku_prefix: str
    series: tuple[str, ...]
    price: float
    mean_quantity: float
    seasonal_amplitude: float
    peak_day_of_year: int
    product_share: float
    order_share: float
    components: tuple[str, ...]
    routing: tuple[str, ...]


PRODUCT_LINES = (
    _ProductLine(
        "Hydraulic Pumps",
        "HP",
        ("HydroFlow", "PressurePro", "AquaDrive"),
        2400.0,
        4.0,
        0.30,
        110,
        0.18,
        0.18,
        ("Impeller", "Pump housing casting", "Mechanical seal", "Motor 4kW", "Pump shaft"),
        ("Machining", "Assembly", "Testing", "Packaging"),
    ),
    _ProductLine(
        "Industrial Valves",
        "IV",
        ("FlowGuard", "SealTite", "ProValve"),
        650.0,
        12.0,
        0.12,
        200,
        0.20,
        0.22,
        ("Valve body casting", "Valve stem", "Actuator", "Seat ring", "Gland packing"),
        ("Machining", "Welding", "Testing", "Painting", "Packaging"),
    ),
    _ProductLine(
        "Gearboxes",
        "GB",
        ("TorqueMax", "DriveLine", "GearStar"),
        3800.0,
        3.0,
        0.20,
        280,
        0.14,
        0.12,
        ("Gear wheel", "Pinion shaft", "Gearbox housing", "Taper bearing", "Oil seal"),
        ("Machining", "Assembly", "Testing", "Painting", "Packaging"),
    ),
    _ProductLine(
        "Conveyor Systems",
        "CS",
        ("RollerLine", "BeltMaster", "FlexConvey"),
        18500.0,
        1.3,
        0.35,
        320,
        0.08,
        0.05,
        ("Conveyor belt", "Roller", "Drive motor 7.5kW", "Frame profile", "Idler"),
        ("Welding", "Assembly", "Painting", "Testing"),
    ),
    _ProductLine(
        "Control Units",
        "CU",
        ("NovaControl", "LogicBox", "SmartDrive"),
        1200.0,
        6.0,
        0.15,
        60,
        0.14,
        0.13,
        ("Control board PCB", "Touch display", "Power supply 24V", "Enclosure", "Relay module"),
        ("Assembly", "Testing", "Packaging"),
    ),
    _ProductLine(
        "Spare Parts",
        "SP",
        (
            "Seal Kit",
            "Bearing Set",
            "Impeller Kit",
            "Filter Cartridge",
            "Drive Belt",
            "Gasket Set",
            "Shaft Coupling",
            "Pressure Sensor",
        ),
        85.0,
        25.0,
        0.25,
        15,
        0.26,
        0.30,
        ("Seal kit blank", "Bearing blank", "Filter media", "Belt blank", "Gasket sheet"),
        ("Machining", "Packaging"),
    ),
)
SUBASSEMBLY_WORDS = ("Drive", "Housing", "Control", "Frame", "Sealing", "Power")
RAW_MATERIALS = (
    ("Steel bar", "kg", 1.2),
    ("Stainless steel sheet", "kg", 3.5),
    ("Aluminium profile", "kg", 4.2),
    ("Copper wire", "kg", 9.0),
    ("Cast iron blank", "kg", 1.8),
    ("Polymer granulate", "kg", 2.3),
    ("Hydraulic oil", "l", 4.0),
    ("Industrial paint", "l", 12.0),
    ("Rubber compound", "kg", 3.1),
    ("Brass rod", "kg", 7.5),
)
MATERIAL_SPECS = (
    "Type A",
    "Type B",
    "Type C",
    "Grade 1",
    "Grade 2",
    "S235",
    "S355",
    "DN25",
    "DN50",
    "M8",
    "M12",
    "20mm",
    "40mm",
    "60mm",
)
WORK_CENTER_KINDS = ("Machining", "Assembly", "Testing", "Packaging", "Welding", "Painting")
MACHINE_TYPES: dict[str, tuple[tuple[str, ...], float, float, float]] = {
    # kind -> (machine types, mean MTBF hours, mean MTTR hours, acquisition cost)
    "Machining": (("CNC Lathe", "CNC Milling Center", "Grinding Machine", "Drill Press"), 900.0, 4.0, 350_000.0),
    "Assembly": (("Assembly Robot", "Hydraulic Press", "Torque Station"), 1200.0, 3.0, 180_000.0),
    "Testing": (("Test Bench", "Leak Tester", "Coordinate Measuring Machine"), 2000.0, 2.0, 120_000.0),
    "Packaging": (("Packaging Line", "Palletizer"), 700.0, 3.0, 90_000.0),
    "Welding": (("Welding Robot", "Laser Cutter"), 800.0, 5.0, 260_000.0),
    "Painting": (("Paint Booth", "Curing Oven"), 1000.0, 6.0, 150_000.0),
}
MACHINE_MAKERS = (
    "Kessler Maschinenbau",
    "Orbis Robotics",
    "Tanaka Seiki",
    "Vanguard Automation",
    "Nordtek",
    "Precisa Systems",
)
SUPPLIER_WORDS = {
    "raw": ("Steel", "Metals", "Alloys", "Polymers", "Chemicals", "Castings"),
    "component": ("Components", "Electronics", "Bearings", "Drives", "Seals", "Precision Parts"),
}


def line_shapes() -> list[DemandShape]:
    """The demand model of each product line (in `PRODUCT_LINES` order): level = its mean order quantity."""
    return [DemandShape(pl.mean_quantity, 0.08, pl.seasonal_amplitude, pl.peak_day_of_year) for pl in PRODUCT_LINES]


def generate_sample_demand(
    sample_dir: Path,
    *,
    seed: int = 7,
    years: int = 3,
    level_factor: float = 1.0,
    shift_from: date | None = None,
) -> DemandHistory:
    """Write `years` of daily demand for every product of the sample's ERP (per sales channel) into
    `sample_dir/demand.sqlite`, each product shaped by its line's demand model and its popularity."""
    erp = sample_dir / "erp.sqlite"
    if not erp.is_file():
        raise SampleEnterpriseError(f"{erp} is missing: generate the sample first (`generate_sample`)")
    con = sqlite3.connect(f"file:{erp}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT sku, product_line FROM products ORDER BY product_id").fetchall()
    finally:
        con.close()
    lines = {pl.name: (pl, shape) for pl, shape in zip(PRODUCT_LINES, line_shapes(), strict=True)}
    products: list[tuple[str, DemandShape]] = []
    rank: dict[str, int] = {}
    for sku, line in rows:
        if line not in lines:
            raise SampleEnterpriseError(f"product {sku!r} has an unknown product line {str(line)[:40]!r}")
        pl, shape = lines[line]
        rank[line] = rank.get(line, 0) + 1
        popularity = 2.0 / rank[line] ** 0.5  # the line's best seller sells most
        products.append(
            (
                sku,
                DemandShape(pl.mean_quantity * popularity + 2.0, 0.08, shape.yearly_amplitude, shape.peak_day_of_year),
            )
        )
    return generate_demand_history(
        sample_dir, products, seed=seed, years=years, as_of=AS_OF, level_factor=level_factor, shift_from=shift_from
    )


# ------------------------------------------------------------------------------------------------- helpers
def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per concern, so changing one table does not reshuffle the others."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def _people(size: SampleSize | str | int) -> tuple[str, int]:
    """The size's name and its employee count."""
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise SampleEnterpriseError(f"size {size!r}: expected one of {sorted(SIZE_PEOPLE)} or a people count")
    if isinstance(size, str):
        if size not in SIZE_PEOPLE:
            raise SampleEnterpriseError(f"size {size!r}: unknown; expected one of {sorted(SIZE_PEOPLE)} or an int")
        return size, SIZE_PEOPLE[size]
    if not MIN_PEOPLE <= size <= MAX_PEOPLE:
        raise SampleEnterpriseError(f"size {size}: people count must be between {MIN_PEOPLE} and {MAX_PEOPLE}")
    return "custom", int(size)


_EPOCH_DAY = np.datetime64("1970-01-01", "D")


def _day(d: date) -> int:
    """Days since 1970-01-01."""
    return int((np.datetime64(d, "D") - _EPOCH_DAY).astype(int))


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> list[str | None]:
    """ISO dates from day numbers; None where `missing`."""
    out: list[str | None] = np.datetime_as_string(np.asarray(days, dtype="int64").astype("datetime64[D]")).tolist()
    if missing is not None:
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
    return out


def _stamps(seconds: np.ndarray, missing: np.ndarray | None = None) -> list[str | None]:
    """'YYYY-MM-DD HH:MM:SS' timestamps from epoch seconds; None where `missing`."""
    text = np.datetime_as_string(np.asarray(seconds, dtype="int64").astype("datetime64[s]")).astype("<U19")
    chars = text.view(np.uint32).reshape(len(text), 19)
    chars[:, 10] = ord(" ")  # ISO 'T' -> ' ', the form SQLAlchemy writes for SQLite DATETIME
    out: list[str | None] = text.tolist()
    if missing is not None:
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
    return out


def _business_seconds(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """A time of day within office hours (07:00-18:59) on each given day, as epoch seconds."""
    return days.astype(np.int64) * 86400 + rng.integers(7 * 3600, 19 * 3600, len(days))


def _ids(prefix: str, width: int, count: int, start: int = 1) -> list[str]:
    """Business ids such as E000001, ..."""
    return [f"{prefix}{i:0{width}d}" for i in range(start, start + count)]


def _allocate(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Split `total` into integer parts proportional to `weights` (largest remainder), each at least `minimum`."""
    n = len(weights)
    base = np.full(n, minimum, dtype=np.int64)
    rest = total - minimum * n
    if rest <= 0:
        return base
    share = weights / weights.sum() * rest
    part = np.floor(share).astype(np.int64)
    remainder = rest - int(part.sum())
    order = np.argsort(-(share - part), kind="stable")
    part[order[:remainder]] += 1
    return base + part


def _unique_emails(first: Sequence[str], last: Sequence[str], domains: Sequence[str], taken: set[str]) -> list[str]:
    """first.last@domain in lower case, numbered where the address is already taken."""
    out = []
    for given, family, d in zip(first, last, domains, strict=True):
        local = f"{given}.{family}".lower()
        email = f"{local}@{d}"
        n = 2
        while email in taken:
            email = f"{local}{n}@{d}"
            n += 1
        taken.add(email)
        out.append(email)
    return out


def _phones(rng: np.random.Generator, count: int) -> list[str]:
    """Invented phone numbers in the fictional 555 exchange."""
    area = rng.integers(200, 990, count).tolist()
    line = rng.integers(0, 10000, count).tolist()
    return [f"+1 {a} 555 {n:04d}" for a, n in zip(area, line, strict=True)]


def _weighted_days(weights: np.ndarray, rng: np.random.Generator, count: int, first_day: int) -> np.ndarray:
    """`count` day numbers drawn from a day-weight profile starting at `first_day`."""
    return first_day + rng.choice(len(weights), size=count, p=weights / weights.sum())


def _weekday_factor(days: np.ndarray) -> np.ndarray:
    """Business rhythm: weekdays 1, Saturday 0.12, Sunday 0.04, quiet Christmas and August."""
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    factor = np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.12, 0.04))
    dt = days.astype("datetime64[D]")
    month = dt.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (dt - dt.astype("datetime64[M]")).astype(int) + 1
    christmas = ((month == 12) & (dom >= 24)) | ((month == 1) & (dom == 1))
    return factor * np.where(christmas, 0.25, 1.0) * np.where(month == 8, 0.75, 1.0)


def _day_of_year(days: np.ndarray) -> np.ndarray:
    """1-based day of year of each day number."""
    dt = days.astype("datetime64[D]")
    return (dt - dt.astype("datetime64[Y]")).astype(int) + 1


def _pick(pool: Sequence[str], number: int) -> str | None:
    """The pool's element at `number` modulo its size; None for an empty pool."""
    return pool[number % len(pool)] if pool else None


def _plant_name(index: int) -> tuple[str, str]:
    """Plant A, Plant B, ..., Plant Z, Plant AA, ... and its site code."""
    letters = ""
    n = index
    while True:
        letters = chr(ord("A") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            break
    return f"Plant {letters}", f"PLANT-{letters}"


Columns = dict[str, list[Any]]

_EMAIL_SPELLINGS: tuple[Callable[[str], str], ...] = (
    lambda e: e,
    lambda e: f" {e.upper()} ",
    lambda e: f"{e}  ",
    lambda e: e.capitalize(),
    lambda e: ".".join(p.capitalize() for p in e.split("@")[0].split(".")) + "@" + e.split("@")[1].upper(),
)
"""How a CRM user may have typed a colleague's work e-mail: identical after strip() and lower()."""


# ----------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Plan:
    """Row-count targets derived from the number of people."""

    people: int
    plants: int
    warehouses: int
    work_centers_per_plant: int
    accounts: int
    opportunities: int
    cases: int
    products: int
    materials: int
    suppliers: int
    sales_orders: int
    purchase_orders: int
    identity_overlap: int


def _plan(people: int) -> _Plan:
    """Scale every population from the people count."""
    plants = max(2, round(people / 2500))
    return _Plan(
        people=people,
        plants=plants,
        warehouses=max(1, plants // 2),
        work_centers_per_plant=int(np.clip(round(people * 0.04 / plants), 4, 40)),
        accounts=max(20, round(people * 0.5)),
        opportunities=max(15, round(people * 1.0)),
        cases=max(10, round(people * 0.8)),
        products=max(24, round(people / 10)),
        materials=max(60, round(people / 6)),
        suppliers=max(10, round(people / 25)),
        sales_orders=max(60, round(people * 2.0)),
        purchase_orders=max(20, round(people * 0.3)),
        identity_overlap=max(5, round(people * 0.04)),
    )


# ---------------------------------------------------------------------------------------------------- HR
@dataclass
class _People:
    """What CRM and ERP need to know about the HR data they refer to."""

    emails: list[str]
    first: list[str]
    last: list[str]
    active: np.ndarray
    division: np.ndarray  # division index per employee (-1 for the CEO)
    plant: np.ndarray  # plant index per employee (-1 outside plants)
    position: np.ndarray
    team_name: list[str]


def _build_hr(plan: _Plan, seed: int, as_of_day: int) -> tuple[dict[str, Columns], _People]:
    """Org tree, positions, employees with one CEO at the root, skills and skill levels."""
    rng = _rng(seed, "hr.org")
    # --- org units: (name, kind, parent index, site code, division index, plant index, team template)
    units: list[tuple[str, str, int | None, str, int, int, _TeamTemplate | None]] = []
    team_weights: list[float] = []

    def add(
        name: str,
        kind: str,
        parent: int | None,
        site: str,
        div: int,
        plant: int,
        template: _TeamTemplate | None = None,
        weight: float = 0.0,
    ) -> int:
        units.append((name, kind, parent, site, div, plant, template))
        team_weights.append(weight)
        return len(units) - 1

    company = add(COMPANY_NAME, "company", None, "HQ", -1, -1)
    for d, (div_name, share, departments) in enumerate(DIVISIONS):
        div_unit = add(div_name, "division", company, "HQ", d, -1)
        head_count = share * plan.people
        if not departments:  # manufacturing: one department per plant
            depts: list[tuple[str, tuple[_TeamTemplate, ...], str, int, int]] = []
            for p in range(plan.plants):
                name, code = _plant_name(p)
                depts.append((name, PLANT_TEAMS, code, p, 3))
        else:
            k = int(np.clip(round(head_count / 30), 1, len(departments)))
            depts = [(name, teams, "HQ", -1, 1) for name, teams in departments[:k]]
        for dept_name, templates, site, plant, min_teams in depts:
            dept_unit = add(dept_name, "department", div_unit, site, d, plant)
            dept_count = head_count / len(depts)
            n_teams = max(min_teams, round(dept_count / 10))
            tw = np.array([templates[i % len(templates)].weight for i in range(n_teams)])
            for i in range(n_teams):
                t = templates[i % len(templates)]
                name = t.name if i < len(templates) else f"{t.name} {i // len(templates) + 1}"
                add(name, "team", dept_unit, site, d, plant, t, share / len(depts) * tw[i] / tw.sum())
    n_units = len(units)
    members_total = plan.people - n_units
    if members_total < 0:
        raise SampleEnterpriseError(f"size {plan.people}: too few people for the organisation's {n_units} units")
    team_idx = np.array([i for i, u in enumerate(units) if u[1] == "team"])
    team_templates = [t for *_, t in units if t is not None]
    members = _allocate(
        members_total, np.array([team_weights[i] for i in team_idx]), minimum=1 if members_total >= len(team_idx) else 0
    )

    org_ids = _ids("OU", 5, n_units)
    org_rng = _rng(seed, "hr.org_units.stamps")
    org_units: Columns = {
        "org_unit_id": org_ids,
        "name": [u[0] for u in units],
        "kind": [u[1] for u in units],
        "parent_id": [org_ids[u[2]] if u[2] is not None else None for u in units],
        "site_code": [u[3] for u in units],
        "cost_center": [f"CC{1000 + i}" for i in range(n_units)],
        "updated_at": _stamps(_business_seconds(org_rng, as_of_day - org_rng.integers(30, 700, n_units))),
    }

    # --- employees: unit heads first (in unit order), then team members
    n = plan.people
    unit_of = np.empty(n, dtype=np.int64)
    manager = np.full(n, -1, dtype=np.int64)
    position = np.empty(n, dtype=np.int64)
    is_head = np.zeros(n, dtype=bool)
    for i, (_, kind, parent, _, _, plant, _) in enumerate(units):
        unit_of[i] = i
        is_head[i] = True
        manager[i] = parent if parent is not None else -1
        title = {
            "company": "Chief Executive Officer",
            "division": "Vice President",
            "department": "Plant Manager" if plant >= 0 else "Department Head",
            "team": "Team Lead",
        }[kind]
        position[i] = POSITION_INDEX[title]
    cursor = n_units
    for t_unit, template, m in zip(team_idx.tolist(), team_templates, members.tolist(), strict=True):
        choices = np.array([POSITION_INDEX[p] for p in template.positions])
        unit_of[cursor : cursor + m] = t_unit
        manager[cursor : cursor + m] = t_unit  # the team lead is employee number t_unit
        position[cursor : cursor + m] = rng.choice(choices, m) if m else choices[:0]
        cursor += m

    erng = _rng(seed, "hr.employees")
    first = [FIRST_NAMES[i] for i in erng.integers(0, len(FIRST_NAMES), n).tolist()]
    last = [LAST_NAMES[i] for i in erng.integers(0, len(LAST_NAMES), n).tolist()]
    emails = _unique_emails(first, last, [COMPANY_DOMAIN] * n, set())
    age = np.where(is_head, erng.uniform(34, 63, n), erng.uniform(20, 63, n))
    birth = as_of_day - np.floor(age * 365.25).astype(np.int64)
    tenure = np.minimum(erng.exponential(np.where(is_head, 9.0, 6.0)), age - 19)
    hire = as_of_day - np.floor(tenure * 365.25).astype(np.int64) - erng.integers(1, 30, n)
    terminated = (~is_head) & (erng.random(n) < 0.05)
    term_day = as_of_day - erng.integers(5, 360, n)
    rehire = terminated & (hire > term_day - 30)
    hire = np.where(rehire, term_day - 30 - erng.integers(30, 1500, n), hire)
    hire = np.maximum(hire, birth + int(18 * 365.25) + 1)
    grade = np.array([POSITIONS[p].grade for p in position.tolist()])
    capacity = np.where(is_head | (erng.random(n) < 0.88), 40.0, erng.choice([20.0, 24.0, 30.0, 32.0], n))
    salary = np.round(30000 + 5500 * grade**1.4 * erng.lognormal(0, 0.1, n) * capacity / 40, -2)
    changed_from = np.maximum(hire, as_of_day - 365)
    changed_day = changed_from + np.floor(erng.random(n) * (as_of_day - changed_from)).astype(np.int64)
    changed_day = np.where(terminated, term_day + 1, changed_day)
    emp_ids = _ids("E", 6, n)
    employees: Columns = {
        "employee_id": emp_ids,
        "first_name": first,
        "last_name": last,
        "work_email": emails,
        "phone": _phones(erng, n),
        "birth_date": _dates(birth),
        "hire_date": _dates(hire),
        "termination_date": _dates(term_day, ~terminated),
        "salary": salary.tolist(),
        "org_unit_id": [org_ids[u] for u in unit_of.tolist()],
        "position_id": [f"P{p + 1:03d}" for p in position.tolist()],
        "manager_id": [emp_ids[m] if m >= 0 else None for m in manager.tolist()],
        "capacity_hours_per_week": capacity.tolist(),
        "status": np.where(terminated, "terminated", "active").tolist(),
        "updated_at": _stamps(_business_seconds(erng, np.minimum(changed_day, as_of_day - 1))),
    }

    prng = _rng(seed, "hr.positions")
    positions_cols: Columns = {
        "position_id": [f"P{i + 1:03d}" for i in range(len(POSITIONS))],
        "title": [p.title for p in POSITIONS],
        "job_family": [p.job_family for p in POSITIONS],
        "grade": [p.grade for p in POSITIONS],
        "is_manager": [p.is_manager for p in POSITIONS],
        "updated_at": _stamps(_business_seconds(prng, as_of_day - prng.integers(100, 900, len(POSITIONS)))),
    }
    srng = _rng(seed, "hr.skills")
    skill_ids = [f"S{i + 1:03d}" for i in range(len(SKILLS))]
    skills_cols: Columns = {
        "skill_id": skill_ids,
        "name": [s for s, _ in SKILLS],
        "category": [c for _, c in SKILLS],
        "updated_at": _stamps(_business_seconds(srng, as_of_day - srng.integers(100, 900, len(SKILLS)))),
    }

    # --- employee skills: Gumbel top-k over each person's candidate pool (team skills weigh 3x)
    width = 10
    pool = np.full((n, width), -1, dtype=np.int64)
    weight = np.zeros((n, width))
    for e in range(n):
        template = units[unit_of[e]][6]
        if template is None:
            own: tuple[str, ...] = MANAGER_SKILLS
            generic: tuple[str, ...] = ()
        else:
            own = template.skills + (("Leadership",) if is_head[e] else ())
            generic = GENERIC_SKILLS
        names = list(dict.fromkeys(own + generic))[:width]
        pool[e, : len(names)] = [SKILL_INDEX[s] for s in names]
        weight[e, : len(names)] = [3.0 if s in own else 1.0 for s in names]
    kr = _rng(seed, "hr.employee_skills")
    with np.errstate(divide="ignore"):
        keys = np.log(weight) + kr.gumbel(size=(n, width))
    order = np.argsort(-keys, axis=1, kind="stable")
    available = (pool >= 0).sum(axis=1)
    skill_count = np.minimum(kr.integers(2, 6, n), available)
    take = np.arange(width)[None, :] < skill_count[:, None]
    emp_rows, rank = np.nonzero(take)
    skill_of = pool[emp_rows, order[emp_rows, rank]]
    years = np.clip(tenure[emp_rows], 0, 20)
    level = np.clip(np.round(1 + years / 5 + kr.normal(0.8, 0.9, len(emp_rows))), 1, 5).astype(int)
    es_from = np.maximum(hire[emp_rows], as_of_day - 365)
    es_day = es_from + np.floor(kr.random(len(emp_rows)) * (as_of_day - es_from)).astype(np.int64)
    employee_skills: Columns = {
        "employee_skill_id": list(range(1, len(emp_rows) + 1)),
        "employee_id": [emp_ids[e] for e in emp_rows.tolist()],
        "skill_id": [skill_ids[s] for s in skill_of.tolist()],
        "level": level.tolist(),
        "certified": ((level >= 4) & (kr.random(len(emp_rows)) < 0.5)).tolist(),
        "updated_at": _stamps(_business_seconds(kr, np.minimum(es_day, as_of_day - 1))),
    }

    people = _People(
        emails=emails,
        first=first,
        last=last,
        active=~terminated,
        division=np.array([units[u][4] for u in unit_of.tolist()]),
        plant=np.array([units[u][5] for u in unit_of.tolist()]),
        position=position,
        team_name=[units[u][0] for u in unit_of.tolist()],
    )
    tables = {
        "org_units": org_units,
        "positions": positions_cols,
        "employees": employees,
        "skills": skills_cols,
        "employee_skills": employee_skills,
    }
    return tables, people


# --------------------------------------------------------------------------------------------------- CRM
@dataclass
class _Companies:
    """Customer companies shared by CRM (accounts) and ERP (customers)."""

    base_name: list[str]
    country: list[str]
    city: list[str]
    vat: list[str]
    account_type: list[str]  # customer | prospect | partner; ERP-only customers are "erp_only"
    number: list[str | None]


def _build_companies(plan: _Plan, seed: int) -> _Companies:
    """Invented companies: CRM accounts (customers, prospects, partners) plus a few ERP-only customers."""
    rng = _rng(seed, "companies")
    n_crm = plan.accounts - 1  # the internal account is added separately
    n_erp_only = max(1, round(n_crm * 0.05))
    n = n_crm + n_erp_only
    country = [
        COUNTRY_CODES[i] for i in rng.choice(len(COUNTRY_CODES), n, p=COUNTRY_WEIGHTS / COUNTRY_WEIGHTS.sum()).tolist()
    ]
    city_pick = rng.integers(0, 1000, n).tolist()
    city = [COUNTRIES[c][1][k % len(COUNTRIES[c][1])][0] for c, k in zip(country, city_pick, strict=True)]
    prefix = rng.integers(0, len(COMPANY_PREFIXES), n).tolist()
    sector = rng.integers(0, len(COMPANY_SECTORS), n).tolist()
    seen: dict[str, int] = {}
    names = []
    for p, s, c in zip(prefix, sector, city, strict=True):
        name = f"{COMPANY_PREFIXES[p]} {COMPANY_SECTORS[s]}"
        if name in seen:
            name = f"{name} {c}"
        while name in seen:
            seen[name] += 1
            name = f"{name.rsplit(' #', 1)[0]} #{seen[name]}"
        seen[name] = 1
        names.append(name)
    digits = rng.integers(100_000_000, 1_000_000_000, n).tolist()
    vats, taken = [], set()
    for c, d in zip(country, digits, strict=True):
        while f"{c}{d}" in taken:
            d += 1
        taken.add(f"{c}{d}")
        vats.append(f"{c}{d}")
    kinds = rng.choice(["customer", "prospect", "partner"], n_crm, p=[0.70, 0.22, 0.08]).tolist()
    kinds = kinds + ["erp_only"] * n_erp_only
    numbers: list[str | None] = []
    counter = 0
    for kind in kinds:
        if kind in ("customer", "erp_only"):
            counter += 1
            numbers.append(f"CU-{counter:06d}")
        else:
            numbers.append(None)
    return _Companies(names, country, city, vats, kinds, numbers)


def _legal_name(base: str, country: str) -> str:
    """The registered name: base name plus the country's legal form."""
    return f"{base} {COUNTRIES[country][0]}"


def _build_crm(
    plan: _Plan, seed: int, as_of_day: int, people: _People, companies: _Companies, products: Columns
) -> tuple[dict[str, Columns], int]:
    """Accounts, contacts (incl. internal contacts that are HR employees), opportunities and cases."""
    rng = _rng(seed, "crm.accounts")
    position_titles = [POSITIONS[p].title for p in people.position.tolist()]
    active_emails = [e for e, a in zip(people.emails, people.active.tolist(), strict=True) if a]
    sellers = [
        e
        for e, t, a in zip(people.emails, position_titles, people.active.tolist(), strict=True)
        if a and t in ("Account Manager", "Sales Representative")
    ] or active_emails
    service = [
        e
        for e, t, a in zip(people.emails, position_titles, people.active.tolist(), strict=True)
        if a and t == "Customer Service Agent"
    ] or sellers

    crm_rows = [i for i, k in enumerate(companies.account_type) if k != "erp_only"]
    n_acc = len(crm_rows) + 1
    acc_ids = _ids("ACC", 6, n_acc)
    with_form = rng.random(len(crm_rows)) < 0.4
    crm_names = [COMPANY_NAME + " (internal)"] + [
        _legal_name(companies.base_name[i], companies.country[i]) if f else companies.base_name[i]
        for i, f in zip(crm_rows, with_form.tolist(), strict=True)
    ]
    owner = [sellers[i] for i in rng.integers(0, len(sellers), n_acc).tolist()]
    owner[0] = people.emails[0]
    revenue = np.round(rng.lognormal(np.log(40e6), 1.2, n_acc), -3)
    accounts: Columns = {
        "account_id": acc_ids,
        "name": crm_names,
        "account_number": [None] + [companies.number[i] for i in crm_rows],
        "vat_id": [None] + [companies.vat[i] for i in crm_rows],
        "account_type": ["internal"] + [companies.account_type[i] for i in crm_rows],
        "industry": ["Machinery"] + [INDUSTRIES[i] for i in rng.integers(0, len(INDUSTRIES), n_acc - 1).tolist()],
        "country": ["DE"] + [companies.country[i] for i in crm_rows],
        "city": ["Stuttgart"] + [companies.city[i] for i in crm_rows],
        "annual_revenue": [None] + revenue[1:].tolist(),
        "owner_email": owner,
        "updated_at": _stamps(_business_seconds(rng, as_of_day - rng.integers(1, 365, n_acc))),
    }

    # --- contacts: internal contacts first (employees, e-mail spelled the CRM way), then customer contacts
    crng = _rng(seed, "crm.contacts")
    sales = SALES_DIVISION
    sales_people = [e for e in range(len(people.emails)) if people.active[e] and people.division[e] == sales]
    others = [e for e in range(len(people.emails)) if people.active[e] and people.division[e] != sales]
    chosen = list(crng.permutation(sales_people))[: plan.identity_overlap]
    if len(chosen) < plan.identity_overlap:
        chosen += list(crng.permutation(others))[: plan.identity_overlap - len(chosen)]
    chosen = sorted(int(e) for e in chosen)
    variants = crng.integers(0, len(_EMAIL_SPELLINGS), len(chosen)).tolist()
    internal_emails = [_EMAIL_SPELLINGS[v](people.emails[e]) for e, v in zip(chosen, variants, strict=True)]
    n_ext_per = 1 + crng.poisson(2.0, n_acc - 1)
    ext_account = np.repeat(np.arange(1, n_acc), n_ext_per)
    n_ext = len(ext_account)
    ext_first = [FIRST_NAMES[i] for i in crng.integers(0, len(FIRST_NAMES), n_ext).tolist()]
    ext_last = [LAST_NAMES[i] for i in crng.integers(0, len(LAST_NAMES), n_ext).tolist()]
    slug = [re.sub(r"[^a-z0-9]+", "-", companies.base_name[i].lower()).strip("-") + ".example" for i in crm_rows]
    ext_emails = _unique_emails(ext_first, ext_last, [slug[a - 1] for a in ext_account.tolist()], set())
    n_con = len(chosen) + n_ext
    con_ids = _ids("CON", 7, n_con)
    contacts: Columns = {
        "contact_id": con_ids,
        "account_id": [INTERNAL_ACCOUNT_ID] * len(chosen) + [acc_ids[a] for a in ext_account.tolist()],
        "first_name": [people.first[e] for e in chosen] + ext_first,
        "last_name": [people.last[e] for e in chosen] + ext_last,
        "email": internal_emails + ext_emails,
        "phone": _phones(crng, n_con),
        "title": [POSITIONS[people.position[e]].title for e in chosen]
        + [CONTACT_TITLES[i] for i in crng.integers(0, len(CONTACT_TITLES), n_ext).tolist()],
        "updated_at": _stamps(_business_seconds(crng, as_of_day - crng.integers(1, 365, n_con))),
    }
    # account index -> range of its external contacts (for cases)
    first_contact = np.concatenate([[0], np.cumsum(n_ext_per)])[:-1] + len(chosen)

    # --- opportunities
    orng = _rng(seed, "crm.opportunities")
    sellable = np.array([a for a in range(1, n_acc) if accounts["account_type"][a] in ("customer", "prospect")])
    n_opp = plan.opportunities
    opp_acc = orng.choice(sellable, n_opp)
    line = orng.choice(len(PRODUCT_LINES), n_opp, p=[pl.order_share for pl in PRODUCT_LINES])
    stage_idx = orng.choice(len(STAGES), n_opp, p=[0.12, 0.12, 0.12, 0.09, 0.30, 0.25])
    closed = stage_idx >= 4
    close_day = np.where(closed, as_of_day - orng.integers(1, 365, n_opp), as_of_day + orng.integers(1, 180, n_opp))
    created = np.minimum(close_day - orng.integers(20, 200, n_opp), as_of_day - orng.integers(1, 60, n_opp))
    price = np.array([pl.price * pl.mean_quantity for pl in PRODUCT_LINES])[line]
    amount = np.round(price * orng.lognormal(1.0, 0.8, n_opp), 2)
    stage = [STAGES[s] for s in stage_idx.tolist()]
    probability = [STAGE_PROBABILITY[s] for s in stage]
    opp_updated = np.where(closed, close_day, np.minimum(as_of_day - 1, created + orng.integers(0, 120, n_opp)))
    opp_updated = np.minimum(opp_updated, as_of_day - 1)
    kind = orng.integers(0, len(OPPORTUNITY_KINDS), n_opp).tolist()
    opportunities: Columns = {
        "opportunity_id": _ids("OPP", 7, n_opp),
        "account_id": [acc_ids[a] for a in opp_acc.tolist()],
        "name": [
            f"{crm_names[a]} - {PRODUCT_LINES[pl].name} {OPPORTUNITY_KINDS[k]}"
            for a, pl, k in zip(opp_acc.tolist(), line.tolist(), kind, strict=True)
        ],
        "product_line": [PRODUCT_LINES[pl].name for pl in line.tolist()],
        "stage": stage,
        "amount": amount.tolist(),
        "probability": probability,
        "expected_revenue": np.round(amount * np.array(probability), 2).tolist(),
        "created_date": _dates(created),
        "close_date": _dates(close_day),
        "owner_email": [owner[a] for a in opp_acc.tolist()],
        "updated_at": _stamps(_business_seconds(orng, opp_updated)),
    }

    # --- cases
    krng = _rng(seed, "crm.cases")
    customer_accounts = np.array([a for a in range(1, n_acc) if accounts["account_type"][a] == "customer"])
    n_cases = plan.cases
    case_acc = krng.choice(customer_accounts, n_cases)
    pick = krng.integers(0, 1 << 30, n_cases)
    contact_index = first_contact[case_acc - 1] + pick % n_ext_per[case_acc - 1]
    no_contact = krng.random(n_cases) < 0.1
    product_pick = krng.integers(0, len(products["sku"]), n_cases)
    has_product = krng.random(n_cases) < 0.8
    opened = (as_of_day - krng.integers(1, 366, n_cases)) * 86400 + krng.integers(6 * 3600, 20 * 3600, n_cases)
    duration = np.round(krng.lognormal(np.log(30 * 3600), 1.0, n_cases)).astype(np.int64)
    closed_at = opened + duration
    as_of_s = as_of_day * 86400
    is_closed = closed_at < as_of_s
    status = np.where(is_closed, "closed", krng.choice(["new", "open", "pending"], n_cases, p=[0.3, 0.5, 0.2]))
    priority = krng.choice(CASE_PRIORITIES, n_cases, p=[0.35, 0.40, 0.20, 0.05])
    issue = krng.integers(0, len(CASE_ISSUES), n_cases).tolist()
    updated = np.where(is_closed, closed_at, np.minimum(opened + krng.integers(0, 86400 * 3, n_cases), as_of_s - 60))
    cases: Columns = {
        "case_id": _ids("CS", 7, n_cases),
        "account_id": [acc_ids[a] for a in case_acc.tolist()],
        "contact_id": [
            None if nc else con_ids[c] for c, nc in zip(contact_index.tolist(), no_contact.tolist(), strict=True)
        ],
        "subject": [
            f"{CASE_ISSUES[i]}: {products['name'][p]}" if hp else CASE_ISSUES[i]
            for i, p, hp in zip(issue, product_pick.tolist(), has_product.tolist(), strict=True)
        ],
        "product_sku": [
            products["sku"][p] if hp else None
            for p, hp in zip(product_pick.tolist(), has_product.tolist(), strict=True)
        ],
        "priority": priority.tolist(),
        "status": status.tolist(),
        "opened_at": _stamps(opened),
        "closed_at": _stamps(closed_at, ~is_closed),
        "owner_email": [service[i] for i in krng.integers(0, len(service), n_cases).tolist()],
        "updated_at": _stamps(updated),
    }
    tables = {"accounts": accounts, "contacts": contacts, "opportunities": opportunities, "cases": cases}
    return tables, len(chosen)


# --------------------------------------------------------------------------------------------------- ERP
@dataclass
class _Erp:
    """ERP tables plus facts the other systems and the files need."""

    tables: dict[str, Columns]
    single_sourced: tuple[str, ...]


def _build_sites(plan: _Plan, seed: int, as_of_day: int) -> Columns:
    """Headquarters, the plants (Plant A, Plant B, ...) and distribution centres."""
    rng = _rng(seed, "erp.sites")
    rows = [("HQ", f"{COMPANY_NAME} Headquarters", "headquarters", "DE", 0)]
    for p in range(plan.plants):
        name, code = _plant_name(p)
        country, city = PLANT_LOCATIONS[p % len(PLANT_LOCATIONS)]
        rows.append((code, name, "plant", country, city))
    for w in range(plan.warehouses):
        country, city = PLANT_LOCATIONS[(w * 3 + 1) % len(PLANT_LOCATIONS)]
        rows.append((f"DC-{w + 1:02d}", f"Distribution Center {w + 1}", "warehouse", country, city))
    jitter = rng.normal(0, 0.05, (len(rows), 2))
    cities = [COUNTRIES[c][1][k % len(COUNTRIES[c][1])] for _, _, _, c, k in rows]
    return {
        "site_id": list(range(1, len(rows) + 1)),
        "site_code": [r[0] for r in rows],
        "name": [r[1] for r in rows],
        "kind": [r[2] for r in rows],
        "city": [c[0] for c in cities],
        "country": [r[3] for r in rows],
        "latitude": np.round([c[1] + j for c, j in zip(cities, jitter[:, 0], strict=True)], 4).tolist(),
        "longitude": np.round([c[2] + j for c, j in zip(cities, jitter[:, 1], strict=True)], 4).tolist(),
        "updated_at": _stamps(_business_seconds(rng, as_of_day - rng.integers(200, 900, len(rows)))),
    }


def _build_erp(plan: _Plan, seed: int, as_of_day: int, people: _People, companies: _Companies) -> _Erp:
    """Sites, work centres, machines, products, materials, BOMs, suppliers, orders and maintenance history."""
    t: dict[str, Columns] = {}
    t["sites"] = _build_sites(plan, seed, as_of_day)
    plant_site = [i + 2 for i in range(plan.plants)]  # site ids: 1 = HQ, then plants

    # --- work centres and machines
    rng = _rng(seed, "erp.work_centers")
    wc_plant, wc_kind = [], []
    for p in range(plan.plants):
        for k in range(plan.work_centers_per_plant):
            wc_plant.append(p)
            wc_kind.append(WORK_CENTER_KINDS[k % len(WORK_CENTER_KINDS)])
    n_wc = len(wc_plant)
    machines_per = 1 + np.minimum(rng.poisson(2.5, n_wc), 8)
    shifts = rng.choice([1, 2, 3], n_wc, p=[0.2, 0.5, 0.3])
    kind_seq: dict[tuple[int, str], int] = {}
    wc_names: list[str] = []
    wc_codes: list[str] = []
    for p, kind in zip(wc_plant, wc_kind, strict=True):
        kind_seq[(p, kind)] = kind_seq.get((p, kind), 0) + 1
        plant_letter = _plant_name(p)[1].split("-")[1]
        wc_names.append(f"{_plant_name(p)[0]} {kind} {kind_seq[(p, kind)]}")
        wc_codes.append(f"WC-{plant_letter}-{len(wc_codes) + 1:04d}")
    t["work_centers"] = {
        "work_center_id": list(range(1, n_wc + 1)),
        "code": wc_codes,
        "site_id": [plant_site[p] for p in wc_plant],
        "name": wc_names,
        "kind": wc_kind,
        "shift_count": shifts.tolist(),
        "hours_per_shift": [8.0] * n_wc,
        "capacity_hours_per_day": np.round(shifts * 8.0 * machines_per * 0.85, 1).tolist(),
        "cost_rate_per_hour": np.round(rng.uniform(45, 140, n_wc), 2).tolist(),
        "updated_at": _stamps(_business_seconds(rng, as_of_day - rng.integers(30, 700, n_wc))),
    }
    mrng = _rng(seed, "erp.machines")
    m_wc = np.repeat(np.arange(n_wc), machines_per)
    n_m = len(m_wc)
    m_kind = [wc_kind[w] for w in m_wc.tolist()]
    m_type = [
        MACHINE_TYPES[k][0][i % len(MACHINE_TYPES[k][0])]
        for k, i in zip(m_kind, mrng.integers(0, 12, n_m).tolist(), strict=True)
    ]
    mtbf = np.round(np.array([MACHINE_TYPES[k][1] for k in m_kind]) * mrng.lognormal(0, 0.35, n_m), 1)
    mttr = np.round(np.array([MACHINE_TYPES[k][2] for k in m_kind]) * mrng.lognormal(0, 0.3, n_m), 2)
    cost = np.round(np.array([MACHINE_TYPES[k][3] for k in m_kind]) * mrng.lognormal(0, 0.3, n_m), -2)
    acquired = as_of_day - mrng.integers(500, 5500, n_m)
    maker = mrng.integers(0, len(MACHINE_MAKERS), n_m).tolist()
    years = np.datetime_as_string(acquired.astype("datetime64[D]")).tolist()

    # failures: alternate exponential up-times (mean MTBF) and log-normal repairs (mean MTTR)
    frng = _rng(seed, "erp.maintenance_logs")
    window_start = (as_of_day - 365) * 24.0  # hours since the epoch
    as_of_h = as_of_day * 24.0
    horizon = as_of_h - window_start
    k = int(np.ceil(horizon / mtbf.min() * 1.6)) + 8
    while True:
        up = frng.exponential(mtbf[:, None], (n_m, k))
        down = frng.lognormal(np.log(mttr)[:, None] - 0.125, 0.5, (n_m, k))
        phase = frng.uniform(0, mtbf)[:, None]
        start = (
            window_start
            - phase
            + np.cumsum(up, axis=1)
            + np.concatenate([np.zeros((n_m, 1)), np.cumsum(down, axis=1)[:, :-1]], axis=1)
        )
        if (start[:, -1] >= as_of_h).all():
            break
        k *= 2
    keep = (start >= window_start) & (start < as_of_h)
    f_machine, f_col = np.nonzero(keep)
    f_start_h = start[f_machine, f_col]
    f_end_h = f_start_h + down[f_machine, f_col]
    open_repair = f_end_h > as_of_h
    status = np.full(n_m, "operational", dtype=object)
    status[f_machine[open_repair]] = "down"
    t["machines"] = {
        "machine_id": list(range(1, n_m + 1)),
        "asset_tag": [f"MC-{i:06d}" for i in range(1, n_m + 1)],
        "work_center_id": (m_wc + 1).tolist(),
        "name": [
            f"{ty} {wc_codes[w]}-{i % 100:02d}" for i, (ty, w) in enumerate(zip(m_type, m_wc.tolist(), strict=True))
        ],
        "machine_type": m_type,
        "manufacturer": [MACHINE_MAKERS[m] for m in maker],
        "serial_number": [
            f"{MACHINE_MAKERS[m][:3].upper()}-{y[:4]}-{(i * 7919 + 104729) % 1_000_000:06d}"
            for i, (m, y) in enumerate(zip(maker, years, strict=True))
        ],
        "mtbf_hours": mtbf.tolist(),
        "mttr_hours": mttr.tolist(),
        "acquisition_cost": cost.tolist(),
        "acquisition_date": _dates(acquired),
        "status": status.tolist(),
        "updated_at": _stamps(_business_seconds(mrng, as_of_day - mrng.integers(1, 365, n_m))),
    }
    # technicians: maintenance people of the machine's plant
    techs: dict[int, list[str]] = {}
    for e, (team, plant, active) in enumerate(
        zip(people.team_name, people.plant.tolist(), people.active.tolist(), strict=True)
    ):
        if active and plant >= 0 and team.startswith("Maintenance"):
            techs.setdefault(plant, []).append(people.emails[e])
    tech_pick = frng.integers(0, 1 << 30, len(f_machine)).tolist()
    n_f = len(f_machine)
    start_s = np.round(f_start_h * 3600).astype(np.int64)
    end_s = np.round(f_end_h * 3600).astype(np.int64)
    log_updated = np.where(open_repair, start_s + 600, end_s + 300)
    t["maintenance_logs"] = {
        "log_id": list(range(1, n_f + 1)),
        "machine_id": (f_machine + 1).tolist(),
        "kind": ["corrective"] * n_f,
        "failure_mode": [FAILURE_MODES[i] for i in frng.integers(0, len(FAILURE_MODES), n_f).tolist()],
        "started_at": _stamps(start_s),
        "ended_at": _stamps(end_s, open_repair),
        "downtime_hours": [
            None if o else round(float(d), 2)
            for d, o in zip(down[f_machine, f_col].tolist(), open_repair.tolist(), strict=True)
        ],
        "technician_email": [
            _pick(techs.get(wc_plant[m_wc[m]], []), pk) for m, pk in zip(f_machine.tolist(), tech_pick, strict=True)
        ],
        "updated_at": _stamps(np.minimum(log_updated, as_of_day * 86400 - 1)),
    }
    # order the log by time, ids follow
    order = np.lexsort((f_machine, start_s))
    for col, values in t["maintenance_logs"].items():
        if col != "log_id":
            t["maintenance_logs"][col] = [values[i] for i in order.tolist()]

    # --- products
    prng = _rng(seed, "erp.products")
    per_line = _allocate(plan.products, np.array([pl.product_share for pl in PRODUCT_LINES]), minimum=2)
    p_line = np.repeat(np.arange(len(PRODUCT_LINES)), per_line)
    n_p = len(p_line)
    p_rank = np.concatenate([np.arange(c) for c in per_line])
    second_plant = prng.random(n_p) < 0.3
    p_plant = (p_line + second_plant) % plan.plants
    base_price = np.array([pl.price for pl in PRODUCT_LINES])[p_line]
    price = np.round(base_price * prng.lognormal(0, 0.35, n_p), 2)
    names = []
    for li, r in zip(p_line.tolist(), p_rank.tolist(), strict=True):
        pl = PRODUCT_LINES[li]
        series = pl.series[r % len(pl.series)]
        names.append(f"{series} {100 + 10 * (r // len(pl.series))}")
    p_updated = as_of_day - prng.integers(1, 365, n_p)
    t["products"] = {
        "product_id": list(range(1, n_p + 1)),
        "sku": [
            f"{PRODUCT_LINES[li].sku_prefix}-{1000 + r}" for li, r in zip(p_line.tolist(), p_rank.tolist(), strict=True)
        ],
        "name": names,
        "product_line": [PRODUCT_LINES[li].name for li in p_line.tolist()],
        "unit_price": price.tolist(),
        "unit_cost": np.round(price * prng.uniform(0.45, 0.7, n_p), 2).tolist(),
        "weight_kg": np.round(np.sqrt(base_price) * prng.lognormal(0, 0.4, n_p) / 2, 2).tolist(),
        "site_id": [plant_site[p] for p in p_plant.tolist()],
        "is_active": (prng.random(n_p) < 0.95).tolist(),
        "updated_at": _stamps(_business_seconds(prng, p_updated)),
    }

    # --- materials: common raw materials, line-specific components and subassemblies
    arng = _rng(seed, "erp.materials")
    n_raw = max(len(RAW_MATERIALS), round(plan.materials * 0.25))
    n_sub = max(len(PRODUCT_LINES), round(plan.materials * 0.12))
    n_comp = max(3 * len(PRODUCT_LINES), plan.materials - n_raw - n_sub)
    comp_per_line = _allocate(n_comp, np.array([pl.product_share for pl in PRODUCT_LINES]), minimum=3)
    sub_per_line = _allocate(n_sub, np.array([pl.product_share for pl in PRODUCT_LINES]), minimum=1)
    m_name, m_cat, m_uom, m_cost = [], [], [], []
    m_line: list[int | None] = []
    for i in range(n_raw):
        base, uom, c = RAW_MATERIALS[i % len(RAW_MATERIALS)]
        j = i // len(RAW_MATERIALS)
        spec = MATERIAL_SPECS[j % len(MATERIAL_SPECS)] + (
            f" v{j // len(MATERIAL_SPECS) + 1}" if j >= len(MATERIAL_SPECS) else ""
        )
        m_name.append(f"{base} {spec}")
        m_cat.append("raw")
        m_line.append(None)
        m_uom.append(uom)
        m_cost.append(c)
    for li, count in enumerate(comp_per_line.tolist()):
        pl = PRODUCT_LINES[li]
        for i in range(count):
            j = i // len(pl.components)
            m_name.append(f"{pl.components[i % len(pl.components)]} {pl.sku_prefix}-{100 + j}")
            m_cat.append("component")
            m_line.append(li)
            m_uom.append("pcs")
            m_cost.append(pl.price * 0.05)
    for li, count in enumerate(sub_per_line.tolist()):
        pl = PRODUCT_LINES[li]
        for i in range(count):
            m_name.append(
                f"{pl.series[0]} {SUBASSEMBLY_WORDS[i % len(SUBASSEMBLY_WORDS)]} module {pl.sku_prefix}-{500 + i}"
            )
            m_cat.append("subassembly")
            m_line.append(li)
            m_uom.append("pcs")
            m_cost.append(pl.price * 0.25)
    n_mat = len(m_name)
    std_cost = np.round(np.array(m_cost) * arng.lognormal(0, 0.3, n_mat), 2)
    t["materials"] = {
        "material_id": list(range(1, n_mat + 1)),
        "material_code": [f"MAT-{i:06d}" for i in range(1, n_mat + 1)],
        "name": m_name,
        "category": m_cat,
        "product_line": [PRODUCT_LINES[li].name if li is not None else None for li in m_line],
        "unit_of_measure": m_uom,
        "standard_cost": std_cost.tolist(),
        "safety_stock": np.round(arng.uniform(5, 500, n_mat), 0).tolist(),
        "updated_at": _stamps(_business_seconds(arng, as_of_day - arng.integers(1, 365, n_mat))),
    }
    raw_ids = np.arange(n_raw)
    comp_ids: dict[int | None, list[int]] = {li: [] for li in range(len(PRODUCT_LINES))}
    sub_ids: dict[int | None, list[int]] = {li: [] for li in range(len(PRODUCT_LINES))}
    for m, (cat, m_li) in enumerate(zip(m_cat, m_line, strict=True)):
        if cat == "component":
            comp_ids[m_li].append(m)
        elif cat == "subassembly":
            sub_ids[m_li].append(m)

    # --- bill of materials: product -> subassemblies/components/raw; subassembly -> components/raw
    brng = _rng(seed, "erp.bill_of_materials")
    bom: list[tuple[int | None, int | None, int, float]] = []  # (parent product, parent material, comp, qty)
    used: set[int] = set()

    def add_lines(parent_product: int | None, parent_material: int | None, li: int, n_sub_take: int) -> None:
        picks: list[int] = []
        if n_sub_take and sub_ids[li]:
            picks += brng.choice(sub_ids[li], min(n_sub_take, len(sub_ids[li])), replace=False).tolist()
        picks += brng.choice(comp_ids[li], min(int(brng.integers(2, 5)), len(comp_ids[li])), replace=False).tolist()
        picks += brng.choice(raw_ids, int(brng.integers(1, 4)), replace=False).tolist()
        for m in picks:
            qty = round(float(brng.uniform(0.5, 40)), 1) if m_cat[m] == "raw" else float(brng.integers(1, 9))
            bom.append((parent_product, parent_material, m, qty))
            used.add(m)

    for p, li in enumerate(p_line.tolist()):
        add_lines(p, None, li, int(brng.integers(0, 3)))
    for li in range(len(PRODUCT_LINES)):
        for s in sub_ids[li]:
            add_lines(None, s, li, 0)
    line_products = {li: np.flatnonzero(p_line == li) for li in range(len(PRODUCT_LINES))}
    for li in range(len(PRODUCT_LINES)):  # every component and subassembly is used somewhere
        for m in comp_ids[li] + sub_ids[li]:
            if m not in used:
                p = int(brng.choice(line_products[li]))
                bom.append((p, None, m, float(brng.integers(1, 5))))
                used.add(m)
    bom_stamp = as_of_day - brng.integers(1, 365, len(bom))
    t["bill_of_materials"] = {
        "bom_line_id": list(range(1, len(bom) + 1)),
        "parent_product_id": [b[0] + 1 if b[0] is not None else None for b in bom],
        "parent_material_id": [b[1] + 1 if b[1] is not None else None for b in bom],
        "component_material_id": [b[2] + 1 for b in bom],
        "quantity": [b[3] for b in bom],
        "updated_at": _stamps(_business_seconds(brng, bom_stamp)),
    }

    # --- suppliers and who supplies what (one sole-sourced set of line components, the rest dual-sourced)
    srng = _rng(seed, "erp.suppliers")
    n_s = plan.suppliers
    s_cat = np.where(np.arange(n_s) % 10 < 3, "raw", "component")
    s_country = [
        COUNTRY_CODES[i]
        for i in srng.choice(len(COUNTRY_CODES), n_s, p=COUNTRY_WEIGHTS / COUNTRY_WEIGHTS.sum()).tolist()
    ]
    s_names, seen_s = [], set()
    for i, (cat, country) in enumerate(zip(s_cat.tolist(), s_country, strict=True)):
        words = SUPPLIER_WORDS[cat]
        name = f"{COMPANY_PREFIXES[(i * 7 + 3) % len(COMPANY_PREFIXES)]} {words[i % len(words)]}"
        if name in seen_s:
            name = f"{name} {i}"
        seen_s.add(name)
        s_names.append(_legal_name(name, country))
    reliability = np.round(np.clip(srng.beta(12, 1.5, n_s), 0.55, 0.995), 3)
    lead = np.where(s_cat == "raw", srng.integers(5, 21, n_s), srng.integers(10, 46, n_s))
    t["suppliers"] = {
        "supplier_id": list(range(1, n_s + 1)),
        "supplier_code": [f"SUP-{i:05d}" for i in range(1, n_s + 1)],
        "name": s_names,
        "category": s_cat.tolist(),
        "country": s_country,
        "vat_id": [f"{c}{800_000_000 + i * 7 + 11}" for i, c in enumerate(s_country)],
        "reliability": reliability.tolist(),
        "lead_time_days": lead.tolist(),
        "payment_terms_days": srng.choice([30, 45, 60, 90], n_s).tolist(),
        "updated_at": _stamps(_business_seconds(srng, as_of_day - srng.integers(1, 365, n_s))),
    }
    by_cat = {c: np.flatnonzero(s_cat == c) for c in ("raw", "component")}
    purchased = [m for m in range(n_mat) if m_cat[m] != "subassembly"]
    used_components = [m for m in purchased if m_cat[m] == "component" and m in used]
    n_single = max(1, round(len(used_components) * 0.15))
    single = set(srng.choice(used_components, n_single, replace=False).tolist())
    sm: list[tuple[int, int, bool]] = []  # (supplier, material, preferred)
    rr = {"raw": 0, "component": 0}
    for m in purchased:
        cat = "raw" if m_cat[m] == "raw" else "component"
        pool = by_cat[cat]
        first_s = int(pool[rr[cat] % len(pool)])
        rr[cat] += 1
        sm.append((first_s, m, True))
        if m not in single:
            second = int(pool[(rr[cat] + int(srng.integers(0, max(1, len(pool) - 1)))) % len(pool)])
            if second == first_s:
                second = int(pool[(np.flatnonzero(pool == first_s)[0] + 1) % len(pool)])
            sm.append((second, m, False))
    sm_sup = np.array([s for s, _, _ in sm])
    sm_mat = np.array([m for _, m, _ in sm])
    sm_price = np.round(std_cost[sm_mat] * srng.uniform(0.9, 1.15, len(sm)), 2)
    sm_lead = np.maximum(1, lead[sm_sup] + srng.integers(-3, 6, len(sm)))
    sm_moq = np.where(np.array(m_cat, dtype=object)[sm_mat] == "raw", 50.0, 10.0)
    t["supplier_materials"] = {
        "supplier_material_id": list(range(1, len(sm) + 1)),
        "supplier_id": (sm_sup + 1).tolist(),
        "material_id": (sm_mat + 1).tolist(),
        "unit_price": sm_price.tolist(),
        "lead_time_days": sm_lead.tolist(),
        "min_order_qty": sm_moq.tolist(),
        "is_preferred": [p for _, _, p in sm],
        "updated_at": _stamps(_business_seconds(srng, as_of_day - srng.integers(1, 365, len(sm)))),
    }

    # --- routings: the line's sequence of work-centre kinds, at the producing plant
    rrng = _rng(seed, "erp.routings")
    wc_by: dict[tuple[int, str], list[int]] = {}
    for w, (p, kind) in enumerate(zip(wc_plant, wc_kind, strict=True)):
        wc_by.setdefault((p, kind), []).append(w)
    r_prod, r_step, r_wc = [], [], []
    for p, (li, plant) in enumerate(zip(p_line.tolist(), p_plant.tolist(), strict=True)):
        step = 0
        for kind in PRODUCT_LINES[li].routing:
            options = wc_by.get((plant, kind))
            if not options:
                continue
            step += 1
            r_prod.append(p)
            r_step.append(step * 10)
            r_wc.append(options[int(rrng.integers(0, len(options)))])
    n_r = len(r_prod)
    r_minutes = np.round(np.sqrt(base_price[r_prod]) * rrng.lognormal(-1.2, 0.4, n_r), 2)
    t["routings"] = {
        "routing_step_id": list(range(1, n_r + 1)),
        "product_id": [p + 1 for p in r_prod],
        "step_no": r_step,
        "work_center_id": [w + 1 for w in r_wc],
        "minutes_per_unit": r_minutes.tolist(),
        "setup_minutes": np.round(rrng.uniform(10, 90, n_r), 0).tolist(),
        "updated_at": _stamps(_business_seconds(rrng, as_of_day - rrng.integers(1, 365, n_r))),
    }

    # --- customers (the ERP side of CRM customer accounts, plus ERP-only customers)
    crng = _rng(seed, "erp.customers")
    cust_rows = [i for i, k in enumerate(companies.account_type) if k in ("customer", "erp_only")]
    n_c = len(cust_rows)
    upper = crng.random(n_c) < 0.1
    legal = [_legal_name(companies.base_name[i], companies.country[i]) for i in cust_rows]
    t["customers"] = {
        "customer_id": list(range(1, n_c + 1)),
        "customer_number": [companies.number[i] for i in cust_rows],
        "name": [n.upper() if u else n for n, u in zip(legal, upper.tolist(), strict=True)],
        "vat_id": [companies.vat[i] for i in cust_rows],
        "country": [companies.country[i] for i in cust_rows],
        "city": [companies.city[i] for i in cust_rows],
        "payment_terms_days": crng.choice([14, 30, 45, 60], n_c).tolist(),
        "credit_limit": np.round(crng.lognormal(np.log(150_000), 0.8, n_c), -3).tolist(),
        "updated_at": _stamps(_business_seconds(crng, as_of_day - crng.integers(1, 365, n_c))),
    }

    # --- sales orders: a year of daily demand with product-line seasonality, weekly rhythm and a trend
    orng = _rng(seed, "erp.sales_orders")
    first_day = as_of_day - 365
    days = np.arange(first_day, as_of_day)
    rhythm = _weekday_factor(days) * (1 + 0.08 * (days - first_day) / 365)
    doy = _day_of_year(days)
    per_line_orders = _allocate(plan.sales_orders, np.array([pl.order_share for pl in PRODUCT_LINES]), minimum=1)
    o_day, o_line = [], []
    for li, count in enumerate(per_line_orders.tolist()):
        pl = PRODUCT_LINES[li]
        season = 1 + pl.seasonal_amplitude * np.cos(2 * np.pi * (doy - pl.peak_day_of_year) / 365.25)
        o_day.append(_weighted_days(rhythm * season, orng, count, first_day))
        o_line.append(np.full(count, li))
    o_day_a = np.concatenate(o_day)
    o_line_a = np.concatenate(o_line)
    order = np.lexsort((orng.random(len(o_day_a)), o_day_a))
    o_day_a, o_line_a = o_day_a[order], o_line_a[order]
    n_o = len(o_day_a)
    cust_weight = orng.pareto(1.2, n_c) + 0.1
    o_cust = orng.choice(n_c, n_o, p=cust_weight / cust_weight.sum())
    discount = orng.uniform(0, 0.12, n_c)
    n_lines = 1 + np.minimum(orng.poisson(1.4, n_o), 5)
    l_order = np.repeat(np.arange(n_o), n_lines)
    l_no = np.arange(len(l_order)) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines) + 1
    l_line = o_line_a[l_order]
    l_prod = np.empty(len(l_order), dtype=np.int64)
    for li in range(len(PRODUCT_LINES)):
        mask = l_line == li
        candidates = line_products[li]
        popularity = 1.0 / (orng.permutation(len(candidates)) + 1.0) ** 0.8
        l_prod[mask] = orng.choice(candidates, int(mask.sum()), p=popularity / popularity.sum())
    # quantities follow each line's demand model (trend and yearly season; connectors/sample/demand.py) with noise
    mean_q = np.array([pl.mean_quantity for pl in PRODUCT_LINES])[l_line]
    shape_factor = np.empty(len(l_order))
    for li, shape in enumerate(line_shapes()):
        mask = l_line == li
        shape_factor[mask] = line_factor(shape, o_day_a[l_order[mask]], first_day)
    drng = _rng(seed, "erp.demand")
    qty = 1 + drng.poisson(drng.gamma(2.0, np.maximum(mean_q * shape_factor - 1, 0.05) / 2.0))
    l_price = np.round(price[l_prod] * (1 - discount[o_cust[l_order]]), 2)
    total = np.round(np.bincount(l_order, weights=qty * l_price, minlength=n_o), 2)
    ship_lead = 2 + orng.poisson(6, n_o) + np.where(o_line_a == 3, 14, 0)
    shipped_day = o_day_a + ship_lead
    cancelled = orng.random(n_o) < 0.02
    is_shipped = (~cancelled) & (shipped_day < as_of_day)
    o_status = np.where(
        cancelled,
        "cancelled",
        np.where(~is_shipped, "open", np.where(shipped_day >= as_of_day - 30, "shipped", "invoiced")),
    )
    o_site = np.array(t["products"]["site_id"])[l_prod[np.concatenate([[0], np.cumsum(n_lines)[:-1]])]]
    o_update_day = np.where(is_shipped, shipped_day, o_day_a)
    o_update_day = np.where(o_status == "invoiced", np.minimum(shipped_day + 3, as_of_day - 1), o_update_day)
    o_stamp = _business_seconds(orng, o_update_day)
    t["sales_orders"] = {
        "so_id": list(range(1, n_o + 1)),
        "so_number": [f"SO-{i:07d}" for i in range(1, n_o + 1)],
        "customer_number": [t["customers"]["customer_number"][c] for c in o_cust.tolist()],
        "site_id": o_site.tolist(),
        "order_date": _dates(o_day_a),
        "requested_date": _dates(o_day_a + 5 + orng.poisson(10, n_o)),
        "shipped_date": _dates(shipped_day, ~is_shipped),
        "status": o_status.tolist(),
        "total_amount": total.tolist(),
        "currency": [CURRENCY] * n_o,
        "updated_at": _stamps(o_stamp),
    }
    t["sales_order_lines"] = {
        "so_line_id": list(range(1, len(l_order) + 1)),
        "so_id": (l_order + 1).tolist(),
        "line_no": l_no.tolist(),
        "product_id": (l_prod + 1).tolist(),
        "quantity": qty.tolist(),
        "unit_price": l_price.tolist(),
        "updated_at": _stamps(o_stamp[l_order]),
    }

    # --- purchase orders: lead times from the supplier, late deliveries from its (un)reliability
    qrng = _rng(seed, "erp.purchase_orders")
    supplier_materials_of: dict[int, list[int]] = {}
    for row, s in enumerate(sm_sup.tolist()):
        supplier_materials_of.setdefault(s, []).append(row)
    active_suppliers = np.array(sorted(supplier_materials_of))
    s_weight = np.array([len(supplier_materials_of[s]) for s in active_suppliers], dtype=float)
    n_po = plan.purchase_orders
    po_sup = qrng.choice(active_suppliers, n_po, p=s_weight / s_weight.sum())
    po_day = np.sort(_weighted_days(_weekday_factor(days), qrng, n_po, first_day))
    po_lead = lead[po_sup]
    late = qrng.random(n_po) > reliability[po_sup]
    actual = (
        po_day
        + np.round(po_lead * qrng.uniform(0.85, 1.1, n_po)).astype(np.int64)
        + np.where(late, qrng.integers(3, 21, n_po), 0)
    )
    po_cancel = qrng.random(n_po) < 0.015
    received = (~po_cancel) & (actual < as_of_day)
    po_status = np.where(po_cancel, "cancelled", np.where(received, "received", "open"))
    po_site = qrng.choice(plant_site, n_po)
    pl_po, pl_no, pl_sm = [], [], []
    for o, s in enumerate(po_sup.tolist()):
        rows = supplier_materials_of[s]
        k_lines = min(len(rows), 1 + int(qrng.poisson(1.2)))
        for j, row in enumerate(qrng.choice(rows, k_lines, replace=False).tolist()):
            pl_po.append(o)
            pl_no.append(j + 1)
            pl_sm.append(row)
    pl_po_a, pl_sm_a = np.array(pl_po), np.array(pl_sm)
    pl_qty = np.maximum(sm_moq[pl_sm_a], np.round(sm_moq[pl_sm_a] * qrng.lognormal(1.5, 0.8, len(pl_po)) / 10) * 10)
    pl_price = sm_price[pl_sm_a]
    po_total = np.round(np.bincount(pl_po_a, weights=pl_qty * pl_price, minlength=n_po), 2)
    po_update_day = np.minimum(np.where(received, actual, po_day + qrng.integers(0, 3, n_po)), as_of_day - 1)
    po_stamp = _business_seconds(qrng, po_update_day)
    t["purchase_orders"] = {
        "po_id": list(range(1, n_po + 1)),
        "po_number": [f"PO-{i:07d}" for i in range(1, n_po + 1)],
        "supplier_id": (po_sup + 1).tolist(),
        "site_id": po_site.tolist(),
        "order_date": _dates(po_day),
        "expected_date": _dates(po_day + po_lead),
        "received_date": _dates(actual, ~received),
        "status": po_status.tolist(),
        "total_amount": po_total.tolist(),
        "updated_at": _stamps(po_stamp),
    }
    t["purchase_order_lines"] = {
        "po_line_id": list(range(1, len(pl_po) + 1)),
        "po_id": (pl_po_a + 1).tolist(),
        "line_no": pl_no,
        "material_id": (sm_mat[pl_sm_a] + 1).tolist(),
        "quantity": pl_qty.tolist(),
        "unit_price": pl_price.tolist(),
        "updated_at": _stamps(po_stamp[pl_po_a]),
    }
    single_codes = tuple(t["materials"]["material_code"][m] for m in sorted(single))
    return _Erp(t, single_codes)


# ------------------------------------------------------------------------------------------------ writing
def _write_database(path: Path, metadata: MetaData, tables: dict[str, Columns]) -> dict[str, int]:
    """Create the tables, bulk-load them, then build the indexes; returns row counts per table."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    dialect = sqlite_dialect.dialect()
    counts: dict[str, int] = {}
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        for table in metadata.sorted_tables:
            con.execute(str(CreateTable(table).compile(dialect=dialect)))
        for table in metadata.sorted_tables:
            columns = tables.get(table.name)
            names = [c.name for c in table.columns]
            if columns is None or set(columns) != set(names):
                raise SampleEnterpriseError(
                    f"table {table.name}: generated columns {sorted(columns or [])} do not match schema {names}"
                )
            lengths = {len(columns[n]) for n in names}
            if len(lengths) != 1:
                raise SampleEnterpriseError(f"table {table.name}: columns have different lengths {lengths}")
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            con.executemany(sql, zip(*(columns[n] for n in names), strict=True))
            counts[table.name] = lengths.pop()
        for table in metadata.sorted_tables:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                con.execute(str(CreateIndex(index).compile(dialect=dialect)))
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)
    return counts


def _write_files(
    out_dir: Path, hr: dict[str, Columns], crm: dict[str, Columns], erp: dict[str, Columns], seed: int, as_of_day: int
) -> tuple[dict[str, Path], dict[str, str], dict[str, int]]:
    """The file-source exports: CSV, Excel (if openpyxl), Parquet (if pyarrow) and JSON; paths, skips, rows."""
    import pandas as pd  # heavy (about a second): only when the file exports are written

    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    rows: dict[str, int] = {}
    site_code = dict(zip(erp["sites"]["site_id"], erp["sites"]["site_code"], strict=True))
    products = pd.DataFrame(erp["products"]).drop(columns=["site_id"])
    products.insert(len(products.columns) - 1, "currency", CURRENCY)
    products.insert(len(products.columns) - 1, "site_code", [site_code[s] for s in erp["products"]["site_id"]])
    files["erp_products.csv"] = out_dir / "erp_products.csv"
    products.to_csv(files["erp_products.csv"], index=False)
    rows["erp_products.csv"] = len(products)

    if importlib.util.find_spec("openpyxl") is not None:
        files["crm_accounts.xlsx"] = out_dir / "crm_accounts.xlsx"
        rows["crm_accounts.xlsx"] = _write_accounts_workbook(files["crm_accounts.xlsx"], crm["accounts"])
    else:
        skipped["crm_accounts.xlsx"] = "openpyxl is not installed"

    if importlib.util.find_spec("pyarrow") is not None:
        files["telemetry_sample.parquet"] = out_dir / "telemetry_sample.parquet"
        telemetry = _telemetry(erp, seed, as_of_day)
        telemetry.to_parquet(files["telemetry_sample.parquet"], index=False)
        rows["telemetry_sample.parquet"] = len(telemetry)
    else:
        skipped["telemetry_sample.parquet"] = "pyarrow is not installed"

    skills = [
        {"skill_id": i, "name": n, "category": c, "updated_at": u}
        for i, n, c, u in zip(
            hr["skills"]["skill_id"],
            hr["skills"]["name"],
            hr["skills"]["category"],
            hr["skills"]["updated_at"],
            strict=True,
        )
    ]
    files["hr_skills.json"] = out_dir / "hr_skills.json"
    files["hr_skills.json"].write_text(json.dumps(skills, indent=1))
    rows["hr_skills.json"] = len(skills)
    return files, skipped, rows


XLSX_MAX_ROWS = 5_000
"""Excel export holds the first 5,000 accounts (spreadsheet exports are partial in real life, and slow to write)."""


def _write_accounts_workbook(path: Path, accounts: Columns) -> int:
    """The CRM accounts as an Excel sheet named "Accounts" (header row + data); returns the data rows."""
    from openpyxl import Workbook  # only for the Excel export

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Accounts")
    sheet.append(list(accounts))
    n = min(XLSX_MAX_ROWS, len(accounts["account_id"]))
    for row in zip(*(values[:n] for values in accounts.values()), strict=True):
        sheet.append(row)
    book.save(path)
    return n


TELEMETRY_MACHINES = 50
TELEMETRY_INTERVAL_S = 300


def _telemetry(erp: dict[str, Columns], seed: int, as_of_day: int) -> Any:
    """Machine readings every 5 minutes over the last day before `as_of` for the first 50 machines."""
    import pandas as pd  # heavy (about a second): only when the telemetry export is written

    rng = _rng(seed, "files.telemetry")
    machines = erp["machines"]
    n_m = min(TELEMETRY_MACHINES, len(machines["machine_id"]))
    steps = 86400 // TELEMETRY_INTERVAL_S
    ts = as_of_day * 86400 - 86400 + np.arange(steps) * TELEMETRY_INTERVAL_S
    m = np.repeat(np.arange(n_m), steps)
    t = np.tile(ts, n_m)
    down = np.array([s == "down" for s in machines["status"][:n_m]])[m]
    hour = (t % 86400) // 3600
    idle = (~down) & ((hour < 6) | (hour >= 22)) & (rng.random(len(m)) < 0.7)
    state = np.where(down, "down", np.where(idle, "idle", "running"))
    load = np.where(state == "running", 1.0, np.where(state == "idle", 0.2, 0.0))
    return pd.DataFrame(
        {
            "reading_id": np.arange(1, len(m) + 1),
            "machine_id": np.array(machines["machine_id"][:n_m])[m],
            "asset_tag": np.array(machines["asset_tag"][:n_m])[m],
            "ts": pd.to_datetime(t, unit="s"),
            "state": state,
            "temperature_c": np.round(22 + 38 * load + rng.normal(0, 1.5, len(m)), 2),
            "vibration_mm_s": np.round(np.abs(0.3 + 3.2 * load + rng.normal(0, 0.4, len(m))), 3),
            "power_kw": np.round(np.maximum(0, 1.5 + 28 * load + rng.normal(0, 1.0, len(m))), 2),
        }
    )


# ---------------------------------------------------------------------------------------------- generate
def generate_sample(out_dir: Path, size: SampleSize | str | int = "small", seed: int = 7) -> SampleManifest:
    """Write the sample enterprise (three SQLite systems, file exports, manifest.json) into `out_dir`."""
    size_name, people = _people(size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(people)
    as_of_day = _day(AS_OF)
    hr, staff = _build_hr(plan, seed, as_of_day)
    companies = _build_companies(plan, seed)
    erp = _build_erp(plan, seed, as_of_day, staff, companies)
    crm, overlap = _build_crm(plan, seed, as_of_day, staff, companies, erp.tables["products"])

    databases: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for system, metadata, tables in (("hr", HR, hr), ("crm", CRM, crm), ("erp", ERP, erp.tables)):
        databases[system] = out_dir / f"{system}.sqlite"
        for table, n in _write_database(databases[system], metadata, tables).items():
            counts[f"{system}.{table}"] = n
    files, skipped, file_rows = _write_files(out_dir, hr, crm, erp.tables, seed, as_of_day)
    manifest = SampleManifest(
        out_dir=out_dir,
        size=size_name,
        people=people,
        seed=seed,
        as_of=AS_OF,
        databases=databases,
        files=files,
        skipped_files=skipped,
        row_counts=counts,
        file_rows=file_rows,
        identity_overlap=overlap,
        single_sourced_materials=erp.single_sourced,
    )
    (out_dir / "manifest.json").write_text(manifest.to_json())
    return manifest


# ------------------------------------------------------------------------------------------------ mutate
@dataclass(frozen=True)
class _Change:
    """How an update alters one column."""

    column: str
    kind: Literal["scale", "choice", "phone", "shift_days"]
    choices: tuple[Any, ...] = ()
    spread: float = 0.05
    decimals: int = 2
    upper: float | None = None


Row = dict[str, Any]


@dataclass(frozen=True)
class _Rule:
    """What `mutate_sample` may do to one table."""

    table: str
    key: str
    changes: tuple[_Change, ...] = ()
    key_prefix: str = ""  # text keys: prefix + zero-padded number; "" for integer keys
    key_width: int = 0
    insert_where: str | None = None  # rows that may be cloned into new rows; None = no inserts
    delete_where: str | None = None  # rows that may be deleted; None = no deletes
    children: tuple[tuple[str, str, str], ...] = ()  # (child table, foreign key, child integer key)
    fresh: Callable[[Row, np.random.Generator, set[str]], None] | None = None  # new identity for a clone
    derive: Callable[[Row, Row], None] | None = None  # (before, after): recompute derived columns


def _fresh_person(email_column: str) -> Callable[[Row, np.random.Generator, set[str]], None]:
    """A clone becomes a different person: new name, e-mail (same domain) and phone."""

    def fresh(row: Row, rng: np.random.Generator, taken: set[str]) -> None:
        row["first_name"] = FIRST_NAMES[int(rng.integers(0, len(FIRST_NAMES)))]
        row["last_name"] = LAST_NAMES[int(rng.integers(0, len(LAST_NAMES)))]
        domain = row[email_column].strip().lower().split("@")[1]
        row[email_column] = _unique_emails([row["first_name"]], [row["last_name"]], [domain], taken)[0]
        row["phone"] = _phones(rng, 1)[0]
        if "termination_date" in row:
            row["termination_date"] = None
            row["status"] = "active"

    return fresh


def _derive_opportunity(_: Row, row: Row) -> None:
    """Probability follows the stage; expected revenue follows amount and probability."""
    row["probability"] = STAGE_PROBABILITY[row["stage"]]
    row["expected_revenue"] = round(row["amount"] * row["probability"], 2)


def _derive_case(_: Row, row: Row) -> None:
    """Closed cases have a closing time, open ones none."""
    if row["status"] != "closed":
        row["closed_at"] = None
    elif row["closed_at"] is None:
        row["closed_at"] = row["updated_at"]


def _derive_work_center(before: Row, row: Row) -> None:
    """Capacity scales with the number of shifts."""
    row["capacity_hours_per_day"] = round(
        before["capacity_hours_per_day"] / before["shift_count"] * row["shift_count"], 1
    )


RULES: dict[str, tuple[_Rule, ...]] = {
    "hr": (
        _Rule("positions", "position_id", (_Change("grade", "choice", tuple(range(1, 11))),)),
        _Rule("skills", "skill_id", (_Change("category", "choice", SKILL_CATEGORIES),)),
        _Rule(
            "employees",
            "employee_id",
            (
                _Change("salary", "scale", spread=0.04, decimals=-2),
                _Change("phone", "phone"),
                _Change("capacity_hours_per_week", "choice", (20.0, 24.0, 30.0, 32.0, 40.0)),
            ),
            key_prefix="E",
            key_width=6,
            insert_where="manager_id IS NOT NULL AND status = 'active'",
            fresh=_fresh_person("work_email"),
        ),
        _Rule(
            "employee_skills", "employee_skill_id", (_Change("level", "choice", (1, 2, 3, 4, 5)),), delete_where="1 = 1"
        ),
    ),
    "crm": (
        _Rule(
            "accounts",
            "account_id",
            (_Change("annual_revenue", "scale", spread=0.08, decimals=-3), _Change("industry", "choice", INDUSTRIES)),
        ),
        _Rule(
            "contacts",
            "contact_id",
            (_Change("phone", "phone"), _Change("title", "choice", CONTACT_TITLES)),
            key_prefix="CON",
            key_width=7,
            insert_where=f"account_id <> '{INTERNAL_ACCOUNT_ID}'",
            fresh=_fresh_person("email"),
        ),
        _Rule(
            "opportunities",
            "opportunity_id",
            (_Change("stage", "choice", STAGES), _Change("amount", "scale", spread=0.1)),
            key_prefix="OPP",
            key_width=7,
            insert_where="1 = 1",
            delete_where="1 = 1",
            derive=_derive_opportunity,
        ),
        _Rule(
            "cases",
            "case_id",
            (_Change("status", "choice", CASE_STATUSES), _Change("priority", "choice", CASE_PRIORITIES)),
            key_prefix="CS",
            key_width=7,
            insert_where="1 = 1",
            delete_where="1 = 1",
            derive=_derive_case,
        ),
    ),
    "erp": (
        _Rule(
            "work_centers", "work_center_id", (_Change("shift_count", "choice", (1, 2, 3)),), derive=_derive_work_center
        ),
        _Rule(
            "machines",
            "machine_id",
            (_Change("mtbf_hours", "scale", spread=0.1, decimals=1), _Change("mttr_hours", "scale", spread=0.1)),
        ),
        _Rule(
            "products",
            "product_id",
            (_Change("unit_price", "scale", spread=0.05), _Change("unit_cost", "scale", spread=0.05)),
        ),
        _Rule("materials", "material_id", (_Change("standard_cost", "scale", spread=0.05),)),
        _Rule("bill_of_materials", "bom_line_id", (_Change("quantity", "scale", spread=0.2, decimals=1),)),
        _Rule(
            "suppliers",
            "supplier_id",
            (
                _Change("reliability", "scale", spread=0.03, decimals=3, upper=0.999),
                _Change("lead_time_days", "scale", spread=0.2, decimals=0),
            ),
        ),
        _Rule("supplier_materials", "supplier_material_id", (_Change("unit_price", "scale", spread=0.05),)),
        _Rule("routings", "routing_step_id", (_Change("minutes_per_unit", "scale", spread=0.1),)),
        _Rule("customers", "customer_id", (_Change("credit_limit", "scale", spread=0.1, decimals=-3),)),
        _Rule("purchase_orders", "po_id", (_Change("expected_date", "shift_days"),)),
        _Rule("purchase_order_lines", "po_line_id", (_Change("quantity", "scale", spread=0.2, decimals=0),)),
        _Rule(
            "sales_orders",
            "so_id",
            (_Change("requested_date", "shift_days"),),
            insert_where="1 = 1",
            delete_where="status IN ('open', 'cancelled')",
            children=(("sales_order_lines", "so_id", "so_line_id"),),
        ),
        _Rule("sales_order_lines", "so_line_id", (_Change("quantity", "scale", spread=0.3, decimals=0),)),
        _Rule("maintenance_logs", "log_id", (_Change("failure_mode", "choice", FAILURE_MODES),)),
    ),
}
ORDER_TOTALS = (
    ("sales_orders", "so_id", "sales_order_lines", "so_line_id"),
    ("purchase_orders", "po_id", "purchase_order_lines", "po_line_id"),
)
UNIQUE_EMAIL_COLUMNS = {"employees": "work_email", "contacts": "email"}


def _changed_value(change: _Change, value: Any, rng: np.random.Generator) -> Any:
    """A new value for one column, different from `value`."""
    if change.kind == "phone":
        return _phones(rng, 1)[0]
    if change.kind == "choice":
        options = [c for c in change.choices if c != value]
        return options[int(rng.integers(0, len(options)))]
    if change.kind == "shift_days":
        return (date.fromisoformat(value) + timedelta(days=int(rng.integers(1, 8)))).isoformat()
    factor = 1 + rng.normal(0, change.spread)
    new = round(value * factor, change.decimals)
    if change.upper is not None:
        new = min(new, change.upper)
    step = 10.0**-change.decimals
    if new == value:
        new = value - step if change.upper is not None and value + step > change.upper else value + step
    new = max(new, step)  # quantities, prices and rates stay positive
    if isinstance(value, int):
        return int(round(new))
    return round(float(new), max(change.decimals, 0))


def _next_key(con: sqlite3.Connection, rule: _Rule) -> int:
    """The number after the highest key in use."""
    if rule.key_prefix:
        row = con.execute(
            f"SELECT MAX(CAST(SUBSTR({rule.key}, {len(rule.key_prefix) + 1}) AS INTEGER)) FROM {rule.table}"
        ).fetchone()
    else:
        row = con.execute(f"SELECT MAX({rule.key}) FROM {rule.table}").fetchone()
    return int(row[0] or 0) + 1


def _fetch(con: sqlite3.Connection, table: str, key: str, keys: Iterable[Any]) -> list[Row]:
    """Whole rows for the given keys, in key order."""
    keys = list(keys)
    out: list[Row] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        cur = con.execute(f"SELECT * FROM {table} WHERE {key} IN ({', '.join('?' * len(chunk))}) ORDER BY {key}", chunk)
        names = [d[0] for d in cur.description]
        out += [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return out


def _insert(con: sqlite3.Connection, table: str, rows: list[Row]) -> None:
    """Insert whole rows."""
    if rows:
        names = list(rows[0])
        con.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [tuple(r[n] for n in names) for r in rows],
        )


def _split(total: int, rule: _Rule) -> tuple[int, int, int]:
    """How many of a table's changes are updates, inserts and deletes."""
    inserts = round(total * 0.15) if rule.insert_where else 0
    deletes = round(total * 0.15) if rule.delete_where else 0
    return total - inserts - deletes, inserts, deletes


def _mutate_system(
    con: sqlite3.Connection, system: str, fraction: float, rng: np.random.Generator, watermark: str
) -> dict[str, TableMutation]:
    """Apply one system's share of updates, inserts and deletes, stamping `watermark`."""
    counts = {
        name: con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    updated: dict[str, set[Any]] = {t: set() for t in counts}
    inserted: dict[str, int] = dict.fromkeys(counts, 0)
    deleted: dict[str, int] = dict.fromkeys(counts, 0)
    for rule in RULES[system]:
        expected = fraction * counts[rule.table]
        total = int(np.floor(expected + rng.random()))
        n_update, n_insert, n_delete = _split(total, rule)
        if n_delete:
            candidates = [
                r[0]
                for r in con.execute(
                    f"SELECT {rule.key} FROM {rule.table} WHERE {rule.delete_where} ORDER BY {rule.key}"
                )
            ]
            victims = (
                sorted(rng.choice(candidates, min(n_delete, len(candidates)), replace=False).tolist())
                if candidates
                else []
            )
            n_update += n_delete - len(victims)
            for child, fk, _ in rule.children:
                for i in range(0, len(victims), 500):
                    chunk = victims[i : i + 500]
                    cur = con.execute(f"DELETE FROM {child} WHERE {fk} IN ({', '.join('?' * len(chunk))})", chunk)
                    deleted[child] += cur.rowcount
            for i in range(0, len(victims), 500):
                chunk = victims[i : i + 500]
                con.execute(f"DELETE FROM {rule.table} WHERE {rule.key} IN ({', '.join('?' * len(chunk))})", chunk)
            deleted[rule.table] += len(victims)
        if n_update and rule.changes:
            keys = [
                r[0]
                for r in con.execute(  # rows this run has not touched yet
                    f"SELECT {rule.key} FROM {rule.table} WHERE updated_at <> ? ORDER BY {rule.key}", (watermark,)
                )
            ]
            picked = sorted(rng.choice(keys, min(n_update, len(keys)), replace=False).tolist()) if keys else []
            rows = _fetch(con, rule.table, rule.key, picked)
            for row in rows:
                before = dict(row)
                change = rule.changes[int(rng.integers(0, len(rule.changes)))]
                row[change.column] = _changed_value(change, row[change.column], rng)
                row["updated_at"] = watermark
                if rule.derive:
                    rule.derive(before, row)
                assignments = ", ".join(f"{c} = ?" for c in row if c != rule.key)
                con.execute(
                    f"UPDATE {rule.table} SET {assignments} WHERE {rule.key} = ?",
                    [v for c, v in row.items() if c != rule.key] + [row[rule.key]],
                )
                updated[rule.table].add(row[rule.key])
        if n_insert:
            sources = [
                r[0]
                for r in con.execute(
                    f"SELECT {rule.key} FROM {rule.table} WHERE {rule.insert_where} ORDER BY {rule.key}"
                )
            ]
            picked = rng.choice(sources, min(n_insert, len(sources)), replace=True).tolist() if sources else []
            next_key = _next_key(con, rule)
            email_column = UNIQUE_EMAIL_COLUMNS.get(rule.table)
            taken = (
                {r[0].strip().lower() for r in con.execute(f"SELECT {email_column} FROM {rule.table}")}
                if email_column
                else set()
            )
            child_next = {
                child: con.execute(f"SELECT COALESCE(MAX({ck}), 0) + 1 FROM {child}").fetchone()[0]
                for child, _, ck in rule.children
            }
            new_rows = []
            for source in picked:
                row = _fetch(con, rule.table, rule.key, [source])[0]
                old_key = row[rule.key]
                row[rule.key] = f"{rule.key_prefix}{next_key:0{rule.key_width}d}" if rule.key_prefix else next_key
                if "so_number" in row:
                    row["so_number"] = f"SO-{next_key:07d}"
                next_key += 1
                row["updated_at"] = watermark
                if rule.fresh:
                    rule.fresh(row, rng, taken)
                new_rows.append(row)
                for child, fk, ck in rule.children:
                    kids = [dict(r) for r in _fetch_children(con, child, fk, old_key, ck)]
                    for kid in kids:
                        kid[ck] = child_next[child]
                        child_next[child] += 1
                        kid[fk] = row[rule.key]
                        kid["updated_at"] = watermark
                    _insert(con, child, kids)
                    inserted[child] += len(kids)
            _insert(con, rule.table, new_rows)
            inserted[rule.table] += len(new_rows)
    _refresh_totals(con, updated, watermark)
    return {
        f"{system}.{t}": TableMutation(f"{system}.{t}", counts[t], len(updated[t]), inserted[t], deleted[t])
        for t in counts
    }


def _fetch_children(con: sqlite3.Connection, child: str, fk: str, parent: Any, child_key: str) -> list[Row]:
    """The child rows of one parent, in key order."""
    cur = con.execute(f"SELECT * FROM {child} WHERE {fk} = ? ORDER BY {child_key}", (parent,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _refresh_totals(con: sqlite3.Connection, updated: dict[str, set[Any]], watermark: str) -> None:
    """Order totals follow their changed lines (and the order's watermark moves with them)."""
    for header, key, lines, line_key in ORDER_TOTALS:
        if lines not in updated or not updated[lines]:
            continue
        changed = sorted(updated[lines])
        parents: set[Any] = set()
        for i in range(0, len(changed), 500):
            chunk = changed[i : i + 500]
            parents |= {
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT {key} FROM {lines} WHERE {line_key} IN ({', '.join('?' * len(chunk))})", chunk
                )
            }
        for parent in sorted(parents):
            (stamp,) = con.execute(f"SELECT updated_at FROM {header} WHERE {key} = ?", (parent,)).fetchone()
            inserted_now = stamp == watermark and parent not in updated[header]
            con.execute(
                f"UPDATE {header} SET total_amount = (SELECT ROUND(COALESCE(SUM(quantity * unit_price), 0), 2)"
                f" FROM {lines} WHERE {lines}.{key} = ?), updated_at = ? WHERE {key} = ?",
                (parent, watermark, parent),
            )
            if not inserted_now:
                updated[header].add(parent)


def mutate_sample(out_dir: Path, fraction: float = 0.01, seed: int = 1) -> MutationSummary:
    """Change about `fraction` of the rows of each system in place: updates (newer updated_at), inserts, deletes."""
    out_dir = Path(out_dir)
    if not 0 < fraction <= 0.5:
        raise SampleEnterpriseError(f"fraction {fraction}: must be in (0, 0.5]")
    tables: dict[str, TableMutation] = {}
    watermarks: dict[str, str] = {}
    for system in SYSTEMS:
        path = out_dir / f"{system}.sqlite"
        if not path.is_file():
            raise SampleEnterpriseError(f"{path}: no sample database here; run generate_sample first")
        con = sqlite3.connect(path)
        try:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            latest = max(con.execute(f"SELECT MAX(updated_at) FROM {n}").fetchone()[0] or "" for n in names)
            if not latest:
                raise SampleEnterpriseError(f"{path}: no updated_at watermark found")
            stamp = datetime.fromisoformat(latest[:19]) + timedelta(hours=1)
            watermarks[system] = stamp.strftime("%Y-%m-%d %H:%M:%S")
            tables.update(_mutate_system(con, system, fraction, _rng(seed, f"mutate.{system}"), watermarks[system]))
            con.commit()
        finally:
            con.close()
    manifest_path = out_dir / "manifest.json"
    if manifest_path.is_file():
        manifest = SampleManifest.read(out_dir)
        counts = dict(manifest.row_counts)
        for name, t in tables.items():
            counts[name] = t.rows_before + t.inserted - t.deleted
        body = json.loads(manifest_path.read_text())
        body["row_counts"] = counts
        manifest_path.write_text(json.dumps(body, indent=2, sort_keys=True))
    return MutationSummary(out_dir=out_dir, fraction=fraction, seed=seed, watermarks=watermarks, tables=tables)


__all__ = [
    "AS_OF",
    "COMPANY_DOMAIN",
    "MutationSummary",
    "SIZE_PEOPLE",
    "SampleEnterpriseError",
    "SampleManifest",
    "SampleSize",
    "TableMutation",
    "generate_sample",
    "mutate_sample",
]
