"""Reading OWL into the Ontology model and writing any Ontology back as OWL."""

from __future__ import annotations

from pathlib import Path

import pytest
import rdflib

from ontology.core import load_core
from ontology.errors import OntologyError
from ontology.model import ClassDef, CommandDef, ComponentDef, Ontology, PropertyDef, RelationshipDef
from ontology.owl import local_name, parse_owl_graph, read_owl, write_owl
from ontology.schema import EnumValue, Field, Schema

PREFIXES = """
@prefix ex: <http://example.org/plant#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix twin: <https://enterprise-twin.dev/ontology/core#> .
<http://example.org/plant> a owl:Ontology .
"""
FILE_SUFFIX = {"turtle": ".ttl", "json-ld": ".jsonld", "xml": ".owl", "nt": ".nt"}


def parse(text: str) -> Ontology:
    return parse_owl_graph(rdflib.Graph().parse(data=PREFIXES + text, format="turtle"), source="test.ttl")


def thermostat_ontology() -> Ontology:
    """A DTDL-flavoured ontology using everything OWL has no direct construct for."""
    mode = Schema(
        kind="enum",
        id="dtmi:example:Mode;1",
        enum_value_kind="integer",
        enum_values=(EnumValue("off", 0, (("en", "Off"),)), EnumValue("heat", 1), EnumValue("cool", 2)),
    )
    reading = Schema(
        kind="object", fields=(Field("value", Schema(kind="double")), Field("at", Schema(kind="dateTime")))
    )
    device = ClassDef(id="dtmi:example:Device;1", name="Device", display_name=(("en", "Device"), ("de", "Gerät")))
    thermostat = ClassDef(
        id="dtmi:example:Thermostat;1",
        name="Thermostat",
        parents=("dtmi:example:Device;1",),
        properties=(
            PropertyDef(
                "temperature",
                Schema(kind="float"),
                kind="telemetry",
                unit="degreeCelsius",
                semantic_types=("Temperature",),
            ),
            PropertyDef("mode", mode, writable=True, description=(("en", "Operating mode"),)),
            PropertyDef("serial", Schema(kind="string"), required=True, classification="Confidential"),
            PropertyDef("id", Schema(kind="uuid")),
            PropertyDef("history", Schema(kind="array", element=reading)),
            PropertyDef("tags", Schema(kind="map", element=Schema(kind="string"), map_key="tag", map_value="text")),
            PropertyDef("where", Schema(kind="point")),
        ),
        relationships=(
            RelationshipDef(
                "controls",
                target="dtmi:example:Device;1",
                max=5,
                min=1,
                properties=(PropertyDef("since", Schema(kind="date")),),
                writable=True,
                characteristics=frozenset({"supports"}),
            ),
            RelationshipDef("near", inverse="nearOf", characteristics=frozenset({"symmetric", "custom"})),
        ),
        commands=(
            CommandDef("reboot", request=("delay", Schema(kind="duration")), response=("ok", Schema(kind="boolean"))),
        ),
        components=(ComponentDef("sensor", "dtmi:example:Device;1"),),
        schemas=(mode,),
        semantic_types=("Sensor", "Actuator"),
    )
    plain = ClassDef(id="Local", name="Local thing", parents=("dtmi:example:Thermostat;1",))
    unit = Schema(kind="enum", id="dtmi:example:Unit;1", enum_value_kind="string", enum_values=(EnumValue("c", "C"),))
    return Ontology([device, thermostat, plain], iri=None, version="2", schemas=[unit])


@pytest.mark.parametrize("fmt", ["turtle", "json-ld", "xml", "nt"])
def test_core_ontology_round_trips(fmt, tmp_path):
    core = load_core()
    path = tmp_path / f"core{FILE_SUFFIX[fmt]}"
    path.write_text(write_owl(core, fmt), encoding="utf-8")
    again = read_owl(path)
    assert dict(again.classes) == dict(core.classes)
    assert (again.iri, again.version) == (core.iri, core.version)


@pytest.mark.parametrize("fmt", ["turtle", "json-ld", "xml"])
def test_any_ontology_round_trips(fmt, tmp_path):
    original = thermostat_ontology()
    path = tmp_path / f"thermostat{FILE_SUFFIX[fmt]}"
    path.write_text(write_owl(original, fmt), encoding="utf-8")
    again = read_owl(path)
    assert dict(again.classes) == dict(original.classes)
    assert dict(again.schemas) == dict(original.schemas)
    assert (again.iri, again.version) == (None, "2")
    # member order and display names survive, though RDF is unordered
    thermostat = again.get("Thermostat")
    assert [p.name for p in thermostat.properties][:2] == ["temperature", "mode"]
    assert again.get("Device").display_name == (("en", "Device"), ("de", "Gerät"))
    assert thermostat.properties[1].schema.enum_values[0].display_name == (("en", "Off"),)


def test_written_owl_uses_plain_owl_where_it_can():
    graph = rdflib.Graph().parse(data=write_owl(thermostat_ontology()), format="turtle")
    owl, rdfs = rdflib.OWL, rdflib.RDFS
    assert set(graph.subjects(rdfs.label, None)) == {rdflib.URIRef("dtmi:example:Device;1")}
    device = rdflib.URIRef("dtmi:example:Device;1")
    assert (device, rdflib.RDF.type, owl.Class) in graph
    assert (rdflib.URIRef("dtmi:example:Thermostat;1"), rdfs.subClassOf, device) in graph
    serial = rdflib.URIRef("dtmi:example:Thermostat;1#serial")
    assert graph.value(serial, rdfs.range) == rdflib.XSD.string
    assert (serial, rdflib.RDF.type, owl.DatatypeProperty) in graph
    near = rdflib.URIRef("dtmi:example:Thermostat;1#near")
    assert (near, rdflib.RDF.type, owl.SymmetricProperty) in graph
    assert (rdflib.URIRef("dtmi:example:Thermostat;1#nearOf"), owl.inverseOf, near) in graph


def test_read_guesses_format_from_extension(tmp_path):
    core = load_core()
    for fmt, suffix in (("turtle", ".ttl"), ("xml", ".rdf"), ("json-ld", ".json"), ("nt", ".nt")):
        path = tmp_path / f"core{suffix}"
        path.write_text(write_owl(core, fmt), encoding="utf-8")
        assert len(read_owl(path)) == len(core)
    odd = tmp_path / "core.data"
    odd.write_text(write_owl(core, "turtle"), encoding="utf-8")
    with pytest.raises(OntologyError, match="cannot tell the RDF format"):
        read_owl(odd)
    assert len(read_owl(odd, format="turtle")) == len(core)


def test_reads_classes_properties_and_relationships():
    onto = parse("""
    ex:Thing a owl:Class ; rdfs:label "Thing"@en , "Ding"@de ; rdfs:comment "Anything." .
    ex:Pump a owl:Class ; rdfs:subClassOf ex:Thing .
    ex:Valve a owl:Class ; rdfs:subClassOf ex:Thing .
    ex:Pipe a owl:Class ; rdfs:subClassOf ex:Thing ;
        rdfs:subClassOf [ a owl:Restriction ; owl:onProperty ex:code ; owl:cardinality 1 ] ,
                        [ a owl:Restriction ; owl:onProperty ex:feeds ; owl:minCardinality 2 ] .
    ex:code a owl:DatatypeProperty , owl:FunctionalProperty ; rdfs:domain ex:Pipe ; rdfs:range xsd:string ;
        twin:classification "PII" .
    ex:pressure a owl:DatatypeProperty ; rdfs:domain [ owl:unionOf ( ex:Pump ex:Valve ) ] ; rdfs:range xsd:decimal .
    ex:feeds a owl:ObjectProperty , owl:FunctionalProperty ; rdfs:domain ex:Pipe ;
        rdfs:range [ owl:unionOf ( ex:Pump ex:Valve ) ] ; owl:inverseOf ex:fedBy ; twin:impact "supports" .
    ex:touches a owl:ObjectProperty ; rdfs:domain ex:Pump ; rdfs:range [ owl:unionOf ( ex:Pump ex:Valve ex:Pipe ) ] .
    """)
    thing, pipe = onto.get("Thing"), onto.get("Pipe")
    assert thing.id == "http://example.org/plant#Thing"
    assert thing.display_name == (("en", "Thing"), ("de", "Ding")) and thing.description == (("en", "Anything."),)
    code = pipe.properties[0]
    assert (code.name, code.schema.kind, code.required, code.classification) == ("code", "string", True, "PII")
    assert "code" not in onto.relationships("Pipe")  # a functional datatype property is not a relationship
    assert onto.properties("Pump")["pressure"].schema.kind == "double"
    assert onto.properties("Valve")["pressure"].schema.kind == "double"
    feeds = onto.relationships("Pipe")["feeds"]
    assert feeds.target == thing.id  # union range -> nearest common superclass
    assert (feeds.min, feeds.max) == (2, 1)  # as stated (check() reports min > max)
    assert feeds.inverse == "fedBy" and feeds.characteristics == {"functional", "supports"}
    assert onto.relationships("Pump")["touches"].target == thing.id
    assert any(v.rule == "multiplicity" for v in onto.check())


def test_union_range_without_one_nearest_superclass_has_no_target():
    onto = parse("""
    ex:A a owl:Class . ex:B a owl:Class .
    ex:C a owl:Class ; rdfs:subClassOf ex:A , ex:B .
    ex:D a owl:Class ; rdfs:subClassOf ex:A , ex:B .
    ex:E a owl:Class .
    ex:r a owl:ObjectProperty ; rdfs:domain ex:E ; rdfs:range [ owl:unionOf ( ex:C ex:D ) ] .
    ex:s a owl:ObjectProperty ; rdfs:domain ex:E ; rdfs:range [ owl:unionOf ( ex:A ex:E ) ] .
    """)
    assert onto.relationships("E")["r"].target is None  # A and B are both nearest
    assert onto.relationships("E")["s"].target is None  # nothing in common


def test_xsd_and_enumeration_ranges_map_to_schemas():
    onto = parse("""
    ex:T a owl:Class .
    ex:s a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:string .
    ex:i a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:int .
    ex:n a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:integer .
    ex:l a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:long .
    ex:f a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:float .
    ex:b a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:boolean .
    ex:d a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:date .
    ex:dt a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:dateTime .
    ex:du a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:duration .
    ex:none a owl:DatatypeProperty ; rdfs:domain ex:T .
    ex:e a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range [ a rdfs:Datatype ; owl:oneOf ( "a" "b" ) ] .
    ex:ei a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range [ a rdfs:Datatype ; owl:oneOf ( 1 2 3 ) ] .
    ex:Size a rdfs:Datatype ; owl:equivalentClass [ a rdfs:Datatype ; owl:oneOf ( "S" "M" ) ] .
    ex:named a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range ex:Size .
    """)
    kinds = {name: p.schema.kind for name, p in onto.properties("T").items()}
    assert kinds == {
        "s": "string", "i": "integer", "n": "integer", "l": "long", "f": "double", "b": "boolean", "d": "date",
        "dt": "dateTime", "du": "duration", "none": "string", "e": "enum", "ei": "enum", "named": "enum",
    }  # fmt: skip
    props = onto.properties("T")
    assert [v.value for v in props["e"].schema.enum_values] == ["a", "b"]
    assert props["ei"].schema.enum_value_kind == "integer" and [v.value for v in props["ei"].schema.enum_values] == [
        1,
        2,
        3,
    ]
    assert props["named"].schema.id == "http://example.org/plant#Size"
    assert onto.validate("T", {"e": "a", "ei": 2, "d": "2024-01-31"}) == []
    assert [v.path for v in onto.validate("T", {"e": "c"})] == ["e"]


def test_restriction_on_a_subclass_narrows_its_own_copy():
    onto = parse("""
    ex:Person a owl:Class . ex:Unit a owl:Class .
    ex:Employee a owl:Class ; rdfs:subClassOf ex:Person ,
        [ a owl:Restriction ; owl:onProperty ex:worksIn ; owl:qualifiedCardinality 1 ; owl:onClass ex:Unit ] .
    ex:worksIn a owl:ObjectProperty ; rdfs:domain ex:Person ; rdfs:range ex:Unit .
    """)
    assert onto.relationships("Person")["worksIn"].max is None
    assert (onto.relationships("Employee")["worksIn"].min, onto.relationships("Employee")["worksIn"].max) == (1, 1)


def test_extension_importing_the_core_can_subclass_core_classes(tmp_path):
    path = tmp_path / "robots.ttl"
    path.write_text(
        PREFIXES
        + """
    <http://example.org/plant> owl:imports <https://enterprise-twin.dev/ontology/core> .
    ex:Robot a owl:Class ; rdfs:subClassOf twin:Machine ; rdfs:label "Robot"@en .
    ex:payloadKg a owl:DatatypeProperty ; rdfs:domain ex:Robot ; rdfs:range xsd:double .
    """
    )
    onto = read_owl(path)
    assert onto.labels("Robot") == ("Robot", "Machine", "Asset", "Entity")
    merged = load_core().merge(onto)
    assert "payloadKg" in merged.properties("Robot") and "serialNumber" in merged.properties("Robot")
    assert merged.check() == []


def test_unparsable_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.ttl"
    path.write_text(PREFIXES + "ex:A a owl:Class .\nex:B a owl:Class ;; rdfs:label \n")
    with pytest.raises(OntologyError) as err:
        read_owl(path)
    message = str(err.value)
    assert "broken.ttl" in message and "line" in message


def test_unparsable_xml_names_the_file(tmp_path):
    path = tmp_path / "broken.owl"
    path.write_text("<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><oops></rdf:RDF>")
    with pytest.raises(OntologyError, match="broken.owl"):
        read_owl(path)


def test_missing_file_is_reported():
    with pytest.raises(OntologyError, match="no such OWL file"):
        read_owl(Path("/nonexistent/model.ttl"))


def test_subclass_of_undefined_class_is_an_error(tmp_path):
    path = tmp_path / "dangling.ttl"
    path.write_text(PREFIXES + "ex:Pump a owl:Class ; rdfs:subClassOf ex:Machine .\n")
    with pytest.raises(OntologyError) as err:
        read_owl(path)
    assert [(v.path, v.rule) for v in err.value.violations] == [
        ("http://example.org/plant#Pump", "dangling-subclassof")
    ]
    assert err.value.violations[0].source.endswith("dangling.ttl")
    assert "http://example.org/plant#Machine" in str(err.value) and "dangling.ttl" in str(err.value)


def test_unknown_xsd_range_is_an_error():
    with pytest.raises(OntologyError) as err:
        parse("""
        ex:T a owl:Class .
        ex:p a owl:DatatypeProperty ; rdfs:domain ex:T ; rdfs:range xsd:gYearMonthish .
        ex:q a owl:DatatypeProperty ; rdfs:domain ex:Nowhere ; rdfs:range xsd:string .
        """)
    rules = {(v.path, v.rule) for v in err.value.violations}
    assert rules == {("http://example.org/plant#p", "range"), ("http://example.org/plant#q", "dangling-domain")}
    assert "gYearMonthish" in str(err.value)


def test_writer_rejects_two_definitions_behind_one_iri():
    shared = "http://example.org/plant#level"
    a = ClassDef(
        "http://example.org/plant#A", "A", properties=(PropertyDef("level", Schema(kind="integer"), iri=shared),)
    )
    b = ClassDef(
        "http://example.org/plant#B", "B", properties=(PropertyDef("level", Schema(kind="string"), iri=shared),)
    )
    with pytest.raises(OntologyError, match="level is defined differently"):
        write_owl(Ontology([a, b]))


def test_writer_rejects_unknown_format():
    with pytest.raises(OntologyError, match="cannot write OWL as 'yaml'"):
        write_owl(load_core(), "yaml")


def test_local_name():
    assert local_name("https://enterprise-twin.dev/ontology/core#Employee") == "Employee"
    assert local_name("http://example.org/terms/Pump") == "Pump"
    assert local_name("urn:x:Valve") == "Valve"
