"""Build routing_heldout.jsonl: routing evaluation phrasings, never used as prototypes or for tuning (issue 17).

Rows: {"question", "route", "kind"}; route is "minerals", "registry" or "general".
- For each demo domain, DOMAIN_N questions about its entities (read from the datasets' QA files) in
  phrasings no dataset file uses: imperatives, statements ending in a question mark, conversational
  questions, terse fragments, lower-case questions, a typo in a non-entity word, a typo in the entity name.
- General questions: hard negatives in the very same phrasings about real minerals and real companies
  (the entity name is the only clue), then hand-written knowledge and chit-chat questions that share the
  domains' vocabulary (hardness, colour, founders, share capital, ...), some with typos or lower-cased.
The script refuses to write a question that any dataset, exemplar or general-question file already holds.
An evaluation set only: never a source of prototypes, exemplars, lexical (BM25) statistics, calibration
data or thresholds; tune on the datasets' dev files and general_questions_heldout.jsonl instead.

It reads the entity names from the two demo datasets' QA files, so rebuild it after regenerating them.
Usage: python benchmarks/data/make_routing_heldout.py [OUT]   (stdlib only; seed 1717; re-running gives a byte-identical file;
OUT defaults to routing_heldout.jsonl next to this script)
"""
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = ROOT / "gag_plugins" / "data"  # the general questions it must not repeat, and where its output lives
OUT = HERE / "routing_heldout.jsonl"
DATASETS = {"minerals": ROOT / "modules/gag-domain-minerals/gag_domain_minerals/data",
            "registry": ROOT / "modules/gag-domain-registry/gag_domain_registry/data"}
GENERAL_FILES = [HERE / "general_questions.jsonl", HERE / "general_questions_heldout.jsonl"]
DOMAIN_N = 182  # 26 per kind
KINDS = ["imperative", "statement", "conversational", "terse", "lowercase", "typo", "typo_entity"]

# {kind: {attribute: [templates]}}; "typo" and "typo_entity" draw from the first three kinds.
MINERAL_T = {
    "imperative": {"colour": ["Tell me the colour of {e}.", "State what colour {e} is.",
                              "Give me the colour of {e}, please."],
                   "crystal_system": ["Tell me which crystal system {e} belongs to.",
                                      "State the crystal system of {e}."],
                   "discoverer": ["Tell me who discovered {e}.", "Identify the person who discovered {e}."],
                   "site": ["Tell me where {e} was found.", "State the discovery site of {e}."],
                   "year": ["Tell me the year {e} was discovered.", "State when {e} was first found."]},
    "statement": {"colour": ["{e} has what colour?", "The colour of {e} is?"],
                  "crystal_system": ["{e} crystallizes in which system?", "The crystal system of {e} is which one?"],
                  "discoverer": ["{e} was found by whom?", "The discoverer of {e} was who?"],
                  "site": ["{e} was found where?", "The discovery site of {e} is where?"],
                  "year": ["{e} was found in what year?", "{e} was discovered when?"]},
    "conversational": {"colour": ["Hey, do you know what colour {e} is?", "I'm curious, what colour is {e} usually?"],
                       "crystal_system": ["Quick question: what crystal system is {e}?",
                                          "Do you happen to know the crystal system of {e}?"],
                       "discoverer": ["I was wondering, who first discovered {e}?", "Any idea who discovered {e}?"],
                       "site": ["Do you know where {e} was first found?", "Out of interest, where does {e} come from?"],
                       "year": ["Can you remind me when {e} was discovered?",
                                "Do you know roughly when {e} was discovered?"]},
    "terse": {"colour": ["{e} colour?", "colour of {e}?"], "crystal_system": ["{e} crystal system?", "{e} lattice?"],
              "discoverer": ["{e} discoverer?", "discoverer of {e}?"], "site": ["{e} discovery site?", "{e} locality?"],
              "year": ["{e} discovery year?", "year {e} found?"]},
    "lowercase": {"colour": ["what's the colour of {e}?", "which colour is {e} normally?"],
                  "crystal_system": ["what's the crystal system of {e}?", "which crystal system has {e}?"],
                  "discoverer": ["who was the first person to find {e}?", "who's credited with discovering {e}?"],
                  "site": ["where was {e} first dug up?", "where did they find {e}?"],
                  "year": ["what year did someone discover {e}?", "in which year did {e} turn up first?"]},
}
REGISTRY_T = {
    "imperative": {"sector": ["Tell me which sector {e} is in.", "State the industry of {e}."],
                   "legal_form": ["Tell me the legal form of {e}.", "State how {e} is legally constituted."],
                   "founder": ["Tell me who founded {e}.", "Name the founder of {e}."],
                   "headquarters": ["Tell me where {e} is based.", "State the head office location of {e}."],
                   "founded": ["Tell me {e}'s founding year.", "State the year {e} was set up."],
                   "employees": ["Tell me how many people {e} employs.", "State the headcount of {e}."],
                   "share_capital": ["Tell me the share capital of {e}.", "Give {e}'s share capital in crowns."],
                   "registered": ["Tell me when {e} was entered in the register.",
                                  "Give the date {e} was registered."]},
    "statement": {"sector": ["{e} is active in which industry?", "The sector of {e} is?"],
                  "legal_form": ["{e} is what type of company?", "The legal form of {e} is?"],
                  "founder": ["{e} was set up by whom?", "The founder of {e} was who?"],
                  "headquarters": ["{e} is based where?", "The head office of {e} is in which town?"],
                  "founded": ["{e} was set up in what year?", "The founding year of {e} is?"],
                  "employees": ["{e} has how many staff?", "The headcount at {e} is?"],
                  "share_capital": ["{e} declares how much share capital?", "The share capital of {e} is?"],
                  "registered": ["{e} entered the register when?", "The registration date of {e} is?"]},
    "conversational": {"sector": ["Hey, what does {e} actually do?", "Do you know what business {e} is in?"],
                       "legal_form": ["Any idea what legal form {e} has?",
                                      "Is {e} a partnership or some kind of company?"],
                       "founder": ["I keep forgetting, who started {e}?", "Do you know who set up {e}?"],
                       "headquarters": ["Where is {e} based, do you know?", "Any idea which town {e} calls home?"],
                       "founded": ["How old is {e}, when did it start?", "Do you know when {e} got started?"],
                       "employees": ["Roughly how big is {e} in terms of staff?",
                                     "Do you know how many people {e} has on the payroll?"],
                       "share_capital": ["Out of interest, how much capital does {e} have?",
                                         "Do you happen to know {e}'s share capital?"],
                       "registered": ["Can you remind me when {e} got registered?",
                                      "Do you know the date {e} was put on the register?"]},
    "terse": {"sector": ["{e} sector?", "{e} industry?"], "legal_form": ["{e} legal form?", "legal form of {e}?"],
              "founder": ["{e} founder?", "founder of {e}?"], "headquarters": ["{e} HQ?", "{e} head office?"],
              "founded": ["{e} founding year?", "{e} founded?"], "employees": ["{e} headcount?", "{e} employees?"],
              "share_capital": ["{e} share capital?", "{e} capital?"],
              "registered": ["{e} registration date?", "{e} registered when?"]},
    "lowercase": {"sector": ["what industry is {e} in?", "which sector does {e} belong to?"],
                  "legal_form": ["what kind of company is {e} legally?", "what's the legal form of {e}?"],
                  "founder": ["who started {e}?", "who set up {e} in the first place?"],
                  "headquarters": ["where's {e} based?", "which town is {e} headquartered in?"],
                  "founded": ["what year was {e} set up?", "when did {e} start out?"],
                  "employees": ["how many staff does {e} employ?", "how big is {e}'s workforce?"],
                  "share_capital": ["how much share capital has {e} got?", "what's {e}'s share capital?"],
                  "registered": ["when did {e} get registered?", "what date was {e} registered on?"]},
}
# Hard negatives: the same phrasings about real minerals and real companies, answered by the plain base.
REAL_MINERALS = ["quartz", "calcite", "fluorite", "pyrite", "malachite", "azurite", "galena", "hematite",
                 "magnetite", "gypsum", "halite", "talc", "topaz", "corundum", "beryl", "tourmaline", "garnet",
                 "olivine", "cinnabar", "sphalerite", "rhodochrosite", "labradorite", "apatite", "kyanite"]
REAL_COMPANIES = ["IKEA", "Nestlé", "Siemens", "Toyota", "Samsung", "Unilever", "Volkswagen", "Nokia", "Lego",
                  "Maersk", "Heineken", "Boeing", "Ford", "Sony", "Nintendo", "Adidas", "Philips", "Microsoft",
                  "Airbus", "Carlsberg", "Spotify", "Ericsson", "Michelin", "Rolex"]
REAL_COMPANY_ATTRS = ["sector", "founder", "headquarters", "founded", "employees", "legal_form"]
HARD_N = 70  # per real-entity family: 10 per kind

GENERAL = {  # hand-written; "|" separates questions
    "knowledge_shared_vocab": (
        "How hard is a diamond on the Mohs scale?|What is the hardness of a diamond?"
        "|Tell me the hardness of corundum.|Which mineral is used to make plaster of Paris?"
        "|Is pyrite worth anything to collectors?|What colour is the streak of hematite?"
        "|Where are most of the world's diamonds mined?|Who discovered polonium?"
        "|When was platinum first discovered?|Which crystal system does halite belong to?"
        "|Name a mineral that glows under UV light.|Is jade a single mineral or two different ones?"
        "|What makes sapphires blue?|Why is basalt usually dark?|Why does obsidian break with sharp edges?"
        "|Who first described the Mohs scale of hardness?|Give me three examples of metamorphic rocks."
        "|What is the streak test used for in mineralogy?|How are fossils preserved in limestone?"
        "|Which country produces the most copper?|What is the colour of pure gold?"
        "|How do crystals grow from a solution?|What is share capital?"
        "|What is the difference between a public and a private limited company?"
        "|How do I register a company in the UK?|What does a company registrar do?"
        "|How many employees make a company a large enterprise in the EU?|What is a cooperative society?"
        "|Explain what a limited partnership is.|How do I read a balance sheet?|What is a holding company?"
        "|When was the East India Company founded?|Who founded the Hudson's Bay Company?"
        "|Where is the headquarters of the United Nations?|How many people work for Walmart?"
        "|Which company makes the PlayStation?|What sector does Pfizer operate in?"
        "|What does an annual report contain?|What is a founding member of an organisation?"
        "|Who founded Wikipedia?|When was Google founded?|Tell me who founded Amazon."
        "|State the year Apple was founded.|Coca-Cola was invented by whom?|Netflix headquarters?"
        "|what does a chief executive do all day?|Name the largest mining company in the world."
        "|What is a share buyback?|Who owns a cooperative?|What is the registered office of a company?"
        "|Which gemstone is the birthstone for April?|Where does the name 'feldspar' come from?"
        "|Is amber a mineral?|What is the specific gravity of silver?"
        "|How many people does the average small business employ?"
        "|What is the difference between a founder and a chief executive?"
        "|Which sector employs the most people worldwide?"
        "|What year did the Dutch East India Company issue its first shares?"
        "|How is a company's market capitalisation calculated?"
        "|Why do some minerals change colour in different light?"),
    "knowledge": (
        "At what temperature does water boil on top of Everest?|Name the capital of Peru."
        "|The speed of light is what?|Who painted The Night Watch?|How many bones are in the human body?"
        "|Tell me the tallest mountain in Africa.|Why is Mars red?|Why are sunsets orange?|Who wrote Jane Eyre?"
        "|What is photosynthesis?|When did the Soviet Union dissolve?|Which planet has the most moons?"
        "|What is the saltiest sea on Earth?|How does an antibiotic kill bacteria?"
        "|What is the Pythagorean theorem?|Who was Hannibal Barca?|What languages are spoken in Switzerland?"
        "|How many states are in Australia?|What is a recession?"
        "|Explain how a bill becomes a law in the United States.|Which river runs through Budapest?"
        "|What is the freezing point of seawater?|How do ants find their way home?|Who invented the telephone?"
        "|What is the population of Canada?|What does DNA stand for?|What is a black hole?"
        "|Who composed the Moonlight Sonata?|How many strings does a cello have?"
        "|How does a penalty shootout work?|How long is an Olympic swimming pool?"
        "|Who won the first football World Cup?|What is the chemical symbol for potassium?|How do tides work?"
        "|Which country has the most islands?|What is a prime number?|Convert 5 miles to kilometres."
        "|What is 12 percent of 350?|Solve for y: 5y - 4 = 31.|How do I flatten a nested list in Python?"
        "|What is a SQL join?|What is memoization?|What does git cherry-pick do?|What is the CSS box model?"
        "|What is a DNS server?|How do I make fresh pasta by hand?|How do I poach an egg?"
        "|What can I use instead of eggs in a cake?|How do I descale a kettle?"
        "|What is a good stretching routine for runners?|How many steps a day is healthy?"
        "|What are the symptoms of a concussion?|When is the cherry blossom season in Korea?"
        "|Do I need a passport to visit Ireland from the UK?|What should I bring on a long ferry crossing?"
        "|Who was the first woman in space?|When was the first steam locomotive built?"
        "|Why did the Aztec Empire collapse?|What was the Enlightenment?"
        "|Which country has the largest population?|What is the capital of Mongolia?|Where is Mount Kilimanjaro?"
        "|Translate 'see you soon' into Italian.|What is a synonym for happy?|What is the plural of cactus?"
        "|Write a short poem about a lighthouse keeper.|Give me a title for a mystery novel."
        "|Summarise the story of The Odyssey.|How long should a CV be?|How do I negotiate a job offer?"
        "|Is napping during the day good for you?|What is yoga nidra?|How do electric cars work?"
        "|What is the jet stream?|How do submarines dive and surface?|What is ocean acidification?"
        "|Why do dogs wag their tails?|How long do tortoises live?|What do koalas eat?"
        "|How many legs does a spider have?|Which bird can fly backwards?|What is the fastest bird?"),
    "chat": (
        "morning! ready for another day?|how's your day been?|Tell me something fun."
        "|Can you recommend a good podcast?|It's raining and the kids are restless, help!|What's your name?"
        "|Are you a person or a program?|cheers, that sorted it|Tell me a fun fact about owls."
        "|What should I cook tonight?|Say something to make me smile.|My train was cancelled again today, ugh."
        "|Do you like music?|What's a good name for a sailing boat?|Tell me a tongue twister."
        "|Can we just chat for a bit?|What do you do for fun?|Say something nice.|alright, catch you later"
        "|See you tomorrow.|Who made you?|Do you dream?|Pick a number between one and ten."
        "|Recommend a board game for four players.|What's a good book for a long flight?"
        "|I can't decide what to watch tonight.|hey, you still there?|What's the best thing about Mondays?"
        "|Guess what, I passed my driving test!|Can you keep a secret?|Do you prefer summer or winter?"
        "|Tell me a pun about cheese.|I'm feeling a bit lonely today.|What would you do with a free afternoon?"
        "|Let's play twenty questions.|Could you say hello to my daughter?|Is it too early for a coffee?"
        "|Happy Friday!|What's your favourite season and why?|You're really helpful, thanks."
        "|Sorry, I made a typo earlier."),
}
N_GENERAL_TYPO, N_GENERAL_LOWER = 36, 24


def norm(q):
    return re.sub(r"[^\w]+", " ", q.casefold()).strip()


def read_questions(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


def existing_questions():
    """Every question in any dataset QA file, any module's router exemplars and the general-question files."""
    paths = [p for d in DATASETS.values() for p in sorted(d.glob("*.jsonl")) if p.name != "corpus.jsonl"]
    paths += GENERAL_FILES + sorted(ROOT.glob("modules/*/*/module/router/exemplars.jsonl"))
    paths += sorted((ROOT / "tests" / "data").glob("*.jsonl"))
    return {norm(q) for p in paths for q in read_questions(p)}


def domain_entities(name):
    rows = [json.loads(line) for p in sorted(DATASETS[name].glob("*.jsonl")) if p.name != "corpus.jsonl"
            for line in open(p, encoding="utf-8")]
    return sorted({r["entity"] for r in rows})


def typo_word(word, rng):
    """Swap two neighbouring inner letters or drop one; always changes the word."""
    for _ in range(20):
        i = rng.randrange(1, len(word) - 2)
        if rng.random() < 0.5 and word[i] != word[i + 1]:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if rng.random() < 0.5:
            return word[:i] + word[i + 1:]
    return word[:-2] + word[-1]


def typo_in(question, rng, avoid=()):
    """A typo in one word of at least 4 letters, never one of avoid (the entity's words)."""
    target = rng.choice([w for w in re.findall(r"[A-Za-z]{4,}", question) if w not in avoid])
    return re.sub(rf"\b{target}\b", typo_word(target, rng), question, count=1)


def phrase(table, kind, entity, attr, rng):
    """One question of the given kind about entity's attribute."""
    base_kind = rng.choice(["imperative", "statement", "conversational"]) if kind.startswith("typo") else kind
    template = rng.choice(table[base_kind][attr])
    if kind == "lowercase":
        return template.format(e=entity.lower())
    question = template.format(e=entity)
    if kind == "typo":
        return typo_in(question, rng, avoid=entity.split())
    if kind == "typo_entity":
        token = entity.split()[0]  # the distinctive word (every entity's has at least 4 letters)
        return question.replace(token, typo_word(token, rng), 1)
    return question


def phrased_rows(table, entities, attrs, n, route, rng, taken, kind_prefix=""):
    """n questions split evenly over KINDS, each a fresh (entity, attribute) pair where possible."""
    rows, per_kind = [], n // len(KINDS)
    pairs = [(e, a) for e in entities for a in attrs]
    for kind in KINDS:
        made = 0
        for entity, attr in rng.sample(pairs, len(pairs)):
            if made == per_kind:
                break
            q = phrase(table, kind, entity, attr, rng)
            if norm(q) not in taken:
                taken.add(norm(q))
                rows.append({"question": q, "route": route, "kind": kind_prefix + kind})
                made += 1
        assert made == per_kind, (route, kind)
    return rows


def general_rows(rng, taken):
    rows = []
    for group, text in GENERAL.items():
        rows += [{"question": q, "route": "general", "kind": group} for q in text.split("|")]
    typoable = [i for i, r in enumerate(rows) if re.search(r"[A-Za-z]{5,}", r["question"])]
    picked = rng.sample(typoable, N_GENERAL_TYPO + N_GENERAL_LOWER)
    for j, i in enumerate(picked):
        q = rows[i]["question"]
        rows[i]["question"], rows[i]["kind"] = ((typo_in(q, rng), rows[i]["kind"] + ":typo") if j < N_GENERAL_TYPO
                                               else (q.lower(), rows[i]["kind"] + ":lowercase"))
    for row in rows:
        assert norm(row["question"]) not in taken, row["question"]
        taken.add(norm(row["question"]))
    return rows


def main(out=OUT):
    rng = random.Random(1717)
    taken = existing_questions()
    before = set(taken)
    rows = []
    for name, table in (("minerals", MINERAL_T), ("registry", REGISTRY_T)):
        attrs = sorted(next(iter(table.values())))
        rows += phrased_rows(table, domain_entities(name), attrs, DOMAIN_N, name, rng, taken)
    rows += phrased_rows(MINERAL_T, REAL_MINERALS, sorted(MINERAL_T["imperative"]), HARD_N, "general", rng, taken,
                         "hard_negative_minerals:")
    rows += phrased_rows(REGISTRY_T, REAL_COMPANIES, REAL_COMPANY_ATTRS, HARD_N, "general", rng, taken,
                         "hard_negative_companies:")
    rows += general_rows(rng, taken)
    assert not {norm(r["question"]) for r in rows} & before and len({norm(r["question"]) for r in rows}) == len(rows)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
    for route in ("minerals", "registry", "general"):
        print(f"{route:<9} {sum(r['route'] == route for r in rows):>4} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
