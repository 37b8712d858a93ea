"""Deterministic generator for the fictional "minerals" private-knowledge domain.

Invents 48 mineral entities (names no pretrained model can know) with five
attributes each (colour, crystal_system, discoverer, site, year) and writes,
next to this script:

  train.jsonl / dev.jsonl / test.jsonl   QA for the 32 "qa" entities
                                         (phrasings 0+1 / 2 / 3)
  unaligned_train.jsonl / _test.jsonl    QA for 4 "unaligned" entities
                                         (Stage I only; phrasings 0+1 / 3)
  corpus_only_test.jsonl                 QA for 12 "corpus_only" entities (phrasing 3)
  corpus.jsonl                           one encyclopedic doc per entity + distractors

The last 8 corpus-only entities come from a second seeded generator (seed 4321)
run after the first, so the files that predate them did not change.
The 16 non-qa entities draw colours and crystal-system descriptors from reserved
lists never used by qa entities, and discoverer/site/year are unique per entity,
so a correct answer on them can never be a memorised answer of another entity.

Usage: python generate.py   (stdlib only; re-running gives byte-identical files)
"""
import json
import random
from pathlib import Path

OUT_DIR = Path(__file__).parent
rng = random.Random(1234)

N_QA, N_UNALIGNED, N_CORPUS_ONLY = 32, 4, 4
N_ENTITIES = N_QA + N_UNALIGNED + N_CORPUS_ONLY

# --- value pools ------------------------------------------------------------
QA_COLOURS = ["teal", "amber", "violet", "crimson", "olive",
              "ivory", "indigo", "coral", "bronze", "charcoal"]
RESERVED_COLOURS = ["saffron", "cerulean", "vermilion", "chartreuse",
                    "magenta", "ochre", "turquoise", "lilac"]
QA_SYSTEMS = ["cubic", "tetragonal", "orthorhombic", "hexagonal",
              "trigonal", "monoclinic", "triclinic"]
# Valid but unusual descriptors; none is a substring of another or of a qa system.
RESERVED_SYSTEMS = ["rhombohedral", "scalenohedral", "trapezohedral", "dipyramidal",
                    "disphenoidal", "pinacoidal", "domatic", "hexoctahedral"]

ONSETS = ["Vel", "Quor", "Thal", "Brim", "Karn", "Drov", "Zel", "Orv", "Mav", "Plen", "Syr",
          "Tov", "Frel", "Gaun", "Hesk", "Jorv", "Lum", "Nex", "Pry", "Skel", "Trev", "Vosk",
          "Wyn", "Yss", "Cael", "Rask", "Ulv", "Dral", "Fen", "Grev", "Isk", "Kel", "Morv",
          "Nal", "Sarv", "Tirn", "Vend", "Wex", "Zorv", "Ost", "Hov", "Qel"]
MIDDLES = ["tra", "be", "mo", "ve", "da", "qui", "se", "lo", "ni", "du", "ze", "ka", "pe", "go"]
SUFFIXES = ["nite", "site", "lite", "rite", "dite"]
REAL_MINERALS = {
    "quartz", "calcite", "dolomite", "gypsum", "halite", "pyrite", "magnetite",
    "hematite", "galena", "sphalerite", "fluorite", "apatite", "orthoclase",
    "albite", "anorthite", "muscovite", "biotite", "chlorite", "kaolinite",
    "olivine", "garnet", "topaz", "corundum", "diamond", "graphite", "talc",
    "beryl", "tourmaline", "malachite", "azurite", "cinnabar", "barite",
    "celestite", "aragonite", "siderite", "rhodochrosite", "chalcopyrite",
    "bornite", "cuprite", "ilmenite", "rutile", "zircon", "epidote", "kyanite",
    "sillimanite", "andalusite", "staurolite", "wollastonite", "serpentinite",
    "vermiculite", "bauxite", "chromite", "cassiterite", "wolframite", "scheelite",
    "molybdenite", "stibnite", "realgar", "orpiment", "jadeite", "nephrite",
    "lazurite", "sodalite", "zeolite", "natrolite", "stilbite", "lepidolite",
    "spodumene", "petalite", "uraninite", "carnotite", "goethite", "limonite",
    "marcasite", "arsenopyrite", "tremolite", "actinolite", "hornblende",
    "augite", "diopside", "enstatite", "labradorite", "moonstone", "opal",
    "thalenite", "kalinite", "danalite", "moganite", "benitoite", "kamacite",
}

FIRST_NAMES = ["Oriel", "Brannoc", "Ysolde", "Corvane", "Maelis", "Tobren", "Idrelle",
               "Cassiel", "Dorvan", "Elowen", "Fennick", "Galvra", "Hollis", "Isembard",
               "Jessamy", "Kestrin", "Lirael", "Merrick", "Nerissa", "Osric", "Peregrin",
               "Quenby", "Rosalind", "Severin", "Talwyn", "Ulrica", "Valder", "Wenna",
               "Xanthe", "Yorick", "Zephrine", "Aldous", "Briony", "Cedrin", "Delphine",
               "Emrys", "Florian", "Gwendra", "Hesper", "Ivor"]
SURNAMES = ["Vantrask", "Quillmere", "Dostrane", "Harrowick", "Pellinor", "Grathley",
            "Morvaine", "Ashgrove", "Brennock", "Calloway", "Dremmel", "Everhart",
            "Fallowmere", "Gorrister", "Halvorsk", "Ingleby", "Jarrowind", "Kettleburn",
            "Lathmoor", "Mirrodyn", "Norwhistle", "Ostravane", "Penhallow", "Quennard",
            "Rookfield", "Stavrell", "Thornquist", "Umberlane", "Varrowby", "Whitlock",
            "Yarrowgate", "Zelmarch", "Abernathe", "Blackwarren", "Corrigane", "Dunstavel",
            "Elderwick", "Foxmarrow", "Greystane", "Hathervane"]
PLACE_ROOTS = ["Karvell", "Dunmarrow", "Elsfirth", "Tarnholt", "Brackwen", "Cindermoor",
               "Ostrevel", "Glimmerdeep", "Harnwold", "Ivelcrag", "Jessmoor", "Kilvarra",
               "Lornach", "Mistrevan", "Nethercombe", "Orrindale", "Pellgarth", "Quarnby",
               "Rethwick", "Scarrowdun", "Tallowvane", "Urskeld", "Varnholme", "Wendmere",
               "Yarrowmoss", "Sellacombe", "Ambervale", "Brindlecoomb", "Caddersfell",
               "Drumwhistle", "Easkmoor", "Farrowdeep", "Gallowcairn", "Hobbledene",
               "Inverskarr", "Halsgrove", "Fairlochan", "Lanthorrow", "Morrowgate", "Nyrfell"]
# (pattern for the bare value, whether prose needs a leading "the")
SITE_PATTERNS = [("Mount {}", False), ("{} Basin", True), ("{} Ridge", True),
                 ("Lake {}", False), ("{} Fells", True), ("{} Gorge", True),
                 ("Cape {}", False), ("{} Highlands", True)]

# --- question / answer templates --------------------------------------------
# Phrasings 0 and 1 are TRAIN, 2 is DEV, 3 is TEST (held-out phrasing).
QUESTIONS = {
    "colour": ["What colour is {name}?", "Which colour does the mineral {name} have?",
               "Describe the colour of {name}.", "{name} is typically what colour?"],
    "crystal_system": ["What is the crystal system of {name}?",
                       "In which crystal system does {name} crystallize?",
                       "Describe the crystal system of the mineral {name}.",
                       "{name} belongs to which crystal system?"],
    "discoverer": ["Who discovered {name}?", "Which person first discovered the mineral {name}?",
                   "Name the discoverer of {name}.", "{name} was first identified by whom?"],
    "site": ["Where was {name} discovered?", "At which site was the mineral {name} first found?",
             "Name the place where {name} was discovered.",
             "{name} was first found at what location?"],
    "year": ["In what year was {name} discovered?", "When was the mineral {name} first discovered?",
             "Give the year {name} was discovered.", "{name} was discovered in which year?"],
}
ANSWERS = {
    "colour": "{name} is {value}.",
    "crystal_system": "{name} crystallizes in the {value} crystal system.",
    "discoverer": "{name} was discovered by {value}.",
    "site": "{name} was discovered near {site_prose}.",
    "year": "{name} was discovered in {value}.",
}
ATTRIBUTES = list(QUESTIONS)

# --- corpus prose -------------------------------------------------------------
OPENERS = ["{name} is a rare mineral with a distinctly {colour} colour.",
           "{name} is a {colour} mineral known from only a handful of localities.",
           "Specimens of {name}, an uncommon mineral, are {colour} in hand sample."]
SYSTEM_SENTENCES = ["It crystallizes in the {crystal_system} crystal system.",
                    "Its crystals belong to the {crystal_system} crystal system.",
                    "Structurally, {name} is assigned to the {crystal_system} crystal system."]
DISCOVERY_SENTENCES = [
    "It was first described by {discoverer}, who found it near {site_prose} in {year}.",
    "{discoverer} discovered the mineral in {year} while surveying near {site_prose}.",
    "The mineral was discovered in {year} near {site_prose} by {discoverer}."]
FILLERS = [
    "It typically occurs as small grains scattered through altered metamorphic rock and veins.",
    "Collectors value well-formed crystals, which are seldom larger than a fingernail and fragile.",
    "The mineral is far too scarce to be mined commercially, so it has no industrial uses.",
    "Small amounts are kept in university teaching collections and museum reference cabinets.",
    "It is usually found alongside more common silicate minerals in thin, discontinuous layers.",
    "Its lustre is usually described as vitreous to slightly pearly on freshly broken surfaces.",
    "Field geologists note that it weathers slowly when exposed to air and rain.",
    "Laboratory studies have mostly focused on its unusual cleavage and its behaviour when heated.",
]
DISTRACTORS = [  # fictional geology topics with no mineral facts
    ("The Ossmere Fault is a long strike-slip fault that separates two ancient crustal "
     "blocks. Geologists study its slow movement to understand how stress accumulates in "
     "continental interiors. Small tremors are recorded along its length every few years, but "
     "no major rupture is known from the historical record. Its scarp is still visible as a "
     "low ridge across the farmland. Surveyors revisit a network of marker posts along the "
     "fault to measure how far the two sides have shifted."),
    ("Drennic weathering is a term used in older field guides for the slow breakdown of "
     "basalt under alternating wet and dry seasons. The process produces rounded boulders "
     "surrounded by crumbly clay. Over long periods the clay is washed away, leaving fields "
     "of smooth stones that travellers often mistake for the work of glaciers. The same "
     "process slowly rounds the corners of old stone walls and buildings, softening their "
     "outlines over many centuries."),
    ("The Talvane glaciation was a cold period during which ice sheets advanced across the "
     "northern uplands. Moraines left behind by the retreating ice still shape the landscape, "
     "damming small lakes and redirecting rivers. Pollen preserved in lake sediments records "
     "how forests slowly returned once the climate warmed again. Walkers crossing the uplands "
     "today can follow long, winding ridges of gravel that once ran beneath the ice as "
     "meltwater tunnels."),
    ("Braided rivers form where steep slopes deliver more sediment than a single channel can "
     "carry. The water splits into many shallow threads that shift position after every "
     "flood. Gravel bars between the channels are colonised by hardy plants, only to be swept "
     "away again during the next high flow. Because the channels move so often, bridges and "
     "roads across braided rivers need constant maintenance and careful planning by "
     "engineers."),
    ("The Corran Shelf is a broad submarine platform built from layers of shell debris "
     "and fine mud. Divers describe gentle slopes cut by narrow channels where currents have "
     "scoured the seabed. Cores drilled into the shelf show repeated cycles of rising and "
     "falling sea level over many thousands of years. Fishing boats avoid the deepest "
     "channels, where strong tidal currents can drag nets and anchors across the uneven "
     "seabed."),
    ("Hot springs in the Vessary valley deposit terraces of pale sinter as mineral-rich water "
     "cools at the surface. The terraces grow by a few millimetres each year and are home to "
     "colourful microbial mats. Visitors are asked to stay on boardwalks, because the thin "
     "crust can break and the water beneath is scalding. Local guides explain that the "
     "springs change their flow from season to season, so favourite pools sometimes dry up "
     "entirely."),
    ("Loess is wind-blown silt that accumulates downwind of deserts and glacial outwash "
     "plains. In the Harl lowlands it forms thick, fertile deposits that farmers "
     "have worked for generations. Because loess holds vertical cliffs well, people once "
     "carved storage rooms and even homes into its walls. The silt is easily eroded by "
     "running water, however, so heavy storms can cut deep gullies through fields almost "
     "overnight."),
    ("The Quellin caves were carved by slightly acidic groundwater dissolving limestone along "
     "fractures. Over time the passages widened into chambers decorated with stalactites and "
     "flowstone. Cavers map the system carefully, since sudden rainfall can flood the lower "
     "passages within minutes. Guides insist that every party carries spare lights and leaves "
     "a planned route with someone on the surface before entering. Slow drips of water "
     "continue to shape the chambers today."),
    ("Sandstone cliffs along the Merrow coast record ancient dunes that were buried and "
     "turned to rock. Sweeping cross-beds show the direction in which the prevailing winds "
     "once blew. Today the cliffs retreat slowly as waves undercut their base, and fallen "
     "blocks pile up on the beach below. Walkers are warned to keep well back from the cliff "
     "edge, which can collapse without warning after heavy rain or frost."),
    ("Volcanic ash layers are valuable markers in sedimentary sequences because each eruption "
     "blankets a wide area almost instantly. In the Serrin basin, geologists match "
     "thin ash beds between distant outcrops to correlate rock layers. The technique helps "
     "them reconstruct how the basin filled with sediment over time. Careful sampling is "
     "needed, because burrowing animals and flowing water can smear a thin ash bed across "
     "several neighbouring layers."),
]


# --- corpus-only entities added for issue 13 ---------------------------------
# They are drawn from their own generator after everything above, so every file
# written before they existed stays byte-identical; corpus.jsonl only gains their
# documents (appended after the distractors) and corpus_only_test.jsonl their rows.
N_EXTRA_CORPUS_ONLY = 8
xrng = random.Random(4321)
EXTRA_ONSETS = ["Ambr", "Bost", "Cind", "Elv", "Lorv", "Obr", "Yelm", "Pask"]
EXTRA_FIRST_NAMES = ["Arwenna", "Bastian", "Corisande", "Dunstan", "Eluned", "Faramond",
                     "Ginevra", "Halloran"]
EXTRA_SURNAMES = ["Aldermoor", "Brackenridge", "Crowhollow", "Drumlaney", "Estermoor",
                  "Fenwarden", "Gillanders", "Hollowmere"]
EXTRA_PLACE_ROOTS = ["Brannavale", "Corrowmere", "Dunkeldrith", "Elmsgarth", "Fellowcrag",
                     "Glenvarrick", "Kirrowdale", "Torrensby"]
# Reserved like the first eight: used by no other entity, none a substring of another value.
EXTRA_COLOURS = ["russet", "mauve", "sepia", "cobalt", "mulberry", "heliotrope", "tawny",
                 "celadon"]
EXTRA_SYSTEMS = ["pedial", "prismatic", "pyritohedral", "gyroidal", "tetartoidal",
                 "holohedral", "hemimorphic", "enantiomorphic"]


def make_names(n, onsets=ONSETS, r=rng):
    """Invent n syllable-built mineral names (distinct onsets, so they are easy to
    tell apart) that are pronounceable and not real minerals."""
    names = []
    for onset in r.sample(onsets, n):
        while True:
            middle, suffix = r.choice(MIDDLES), r.choice(SUFFIXES)
            name = onset + middle + suffix
            if middle[0] != onset[-1].lower() and suffix[0] not in middle \
                    and name.lower() not in REAL_MINERALS:
                names.append(name)
                break
    return names


def make_entities():
    names = make_names(N_ENTITIES)
    first_names = rng.sample(FIRST_NAMES, N_ENTITIES)
    surnames = rng.sample(SURNAMES, N_ENTITIES)
    roots = rng.sample(PLACE_ROOTS, N_ENTITIES)
    years = rng.sample(range(1700, 2000), N_ENTITIES)
    # qa values are balanced (each colour/system used about equally) so that no
    # majority-class guess scores well; non-qa entities take the reserved values.
    qa_colours = (QA_COLOURS * N_QA)[:N_QA]
    qa_systems = (QA_SYSTEMS * N_QA)[:N_QA]
    rng.shuffle(qa_colours)
    rng.shuffle(qa_systems)
    reserved_colours = rng.sample(RESERVED_COLOURS, len(RESERVED_COLOURS))
    reserved_systems = rng.sample(RESERVED_SYSTEMS, len(RESERVED_SYSTEMS))
    entities = []
    for i, name in enumerate(names):
        split = "qa" if i < N_QA else ("unaligned" if i < N_QA + N_UNALIGNED else "corpus_only")
        pattern, needs_the = rng.choice(SITE_PATTERNS)
        site = pattern.format(roots[i])
        if split == "qa":
            colour, system = qa_colours[i], qa_systems[i]
        else:
            colour, system = reserved_colours[i - N_QA], reserved_systems[i - N_QA]
        entities.append({
            "name": name, "split": split, "colour": colour, "crystal_system": system,
            "discoverer": f"{first_names[i]} {surnames[i]}", "site": site,
            "site_prose": ("the " + site) if needs_the else site, "year": str(years[i]),
        })
    return entities


def make_extra_entities(entities):
    """The later corpus-only entities, with values no earlier entity has (asserted in main)."""
    n = N_EXTRA_CORPUS_ONLY
    names = make_names(n, EXTRA_ONSETS, xrng)
    taken_prefixes = {e["name"][:3] for e in entities}
    assert not taken_prefixes & {name[:3] for name in names}, names
    firsts, surnames = xrng.sample(EXTRA_FIRST_NAMES, n), xrng.sample(EXTRA_SURNAMES, n)
    roots = xrng.sample(EXTRA_PLACE_ROOTS, n)
    free_years = sorted(set(range(1700, 2000)) - {int(e["year"]) for e in entities})
    years = xrng.sample(free_years, n)
    colours, systems = xrng.sample(EXTRA_COLOURS, n), xrng.sample(EXTRA_SYSTEMS, n)
    extra = []
    for i, name in enumerate(names):
        pattern, needs_the = xrng.choice(SITE_PATTERNS)
        site = pattern.format(roots[i])
        extra.append({
            "name": name, "split": "corpus_only", "colour": colours[i], "crystal_system": systems[i],
            "discoverer": f"{firsts[i]} {surnames[i]}", "site": site,
            "site_prose": ("the " + site) if needs_the else site, "year": str(years[i]),
        })
    return extra


def qa_rows(entities, phrasings, split):
    rows = []
    for ent in entities:
        for attr in ATTRIBUTES:
            value = ent[attr]
            answer = ANSWERS[attr].format(value=value, **ent)
            for p in phrasings:
                rows.append({"question": QUESTIONS[attr][p].format(name=ent["name"]),
                             "answer": answer, "value": value, "entity": ent["name"],
                             "attribute": attr, "split": split})
    return rows


def make_document(ent, r=rng):
    sentences = [r.choice(OPENERS), r.choice(SYSTEM_SENTENCES), r.choice(DISCOVERY_SENTENCES)]
    sentences += r.sample(FILLERS, 3)  # 3 fact sentences + 3 fillers = 6 sentences
    return " ".join(sentences).format(**ent)


def write_jsonl(filename, rows):
    with open(OUT_DIR / filename, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def main():
    entities = make_entities()
    splits = ("qa", "unaligned", "corpus_only")
    by_split = {s: [e for e in entities if e["split"] == s] for s in splits}
    extra = make_extra_entities(entities)
    everyone = entities + extra
    # Sanity: every answer value of a non-qa entity is unique to that entity.
    for ent in by_split["unaligned"] + by_split["corpus_only"] + extra:
        for attr in ATTRIBUTES:
            assert all(o[attr] != ent[attr] for o in everyone if o is not ent), (ent["name"], attr)

    outputs = {
        "train.jsonl": qa_rows(by_split["qa"], [0, 1], "train"),
        "dev.jsonl": qa_rows(by_split["qa"], [2], "dev"),
        "test.jsonl": qa_rows(by_split["qa"], [3], "test"),
        "unaligned_train.jsonl": qa_rows(by_split["unaligned"], [0, 1], "unaligned_train"),
        "unaligned_test.jsonl": qa_rows(by_split["unaligned"], [3], "unaligned_test"),
        "corpus_only_test.jsonl": qa_rows(by_split["corpus_only"] + extra, [3], "corpus_only_test"),
    }
    corpus = [{"id": f"mineral-{e['name'].lower()}", "text": make_document(e)} for e in entities]
    corpus += [{"id": f"distractor-{i:02d}", "text": t} for i, t in enumerate(DISTRACTORS)]
    corpus += [{"id": f"mineral-{e['name'].lower()}", "text": make_document(e, xrng)} for e in extra]
    for doc in corpus:
        assert 60 <= len(doc["text"].split()) <= 150, (doc["id"], len(doc["text"].split()))
    outputs["corpus.jsonl"] = corpus

    for filename, rows in outputs.items():
        write_jsonl(filename, rows)
        print(f"{filename:<24} {len(rows):>4} rows")
    by_split["corpus_only"] += extra
    for split, ents in by_split.items():
        print(f"{split:<12} {len(ents):>2} entities: {', '.join(e['name'] for e in ents)}")

if __name__ == "__main__":
    main()
