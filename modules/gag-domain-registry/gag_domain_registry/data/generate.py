"""Deterministic generator for the fictional "registry" domain: a company register, documents first.

Invents 48 companies (names no pretrained model can know) with eight attributes each: sector and
legal_form (closed sets), founder (a person), headquarters (a town), founded (a year), employees and
share_capital (numbers) and registered (a date). The knowledge lives in a corpus of documents of
several styles (register extracts, profiles, annual-report paragraphs, news items, one long register
digest). Some facts are stated only outside the company's own document: in a news item naming two
companies, or in the digest. Writes, next to this script:

  corpus.jsonl                          id, title, text: one doc per company, news items naming two
                                        companies, the annual register digest (> 3,000 words), background
  train.jsonl / dev.jsonl / test.jsonl  QA for the 14 "qa" companies (phrasings 0+1 / 2 / 3)
  corpus_only_test.jsonl                QA for the 34 "corpus_only" companies (phrasing 3): in no QA file

Every QA row names the documents that state its fact (`docs`) and where the fact lives
(`fact_location`: own / news / digest). Prose templates and value pools are in prose.py.

Usage: python generate.py   (stdlib only; re-running gives byte-identical files)
"""
import json
import math
import random
from pathlib import Path

from prose import (ANSWERS, ATTRIBUTES, BIOS, COMPANY_ENDINGS, COMPANY_ONSETS, COMPANY_SUFFIXES,
                   DIGEST_CLOSING, DIGEST_ENTRIES, DIGEST_INTRO, DIGEST_REMARKS, DIGEST_TITLE,
                   DISTRACTORS, EXTRACT_FIELDS, FACT_SENTENCES, FEMALE_FIRST, FILLERS, LEGAL_FORMS,
                   MALE_FIRST, MONTHS, OPENERS, PAIR_CLAUSES, PAIR_NEWS, QUESTIONS, SECTOR_INTRO, SECTORS,
                   STYLES, SURNAMES, TOWN_ENDS, TOWN_STEMS)

OUT_DIR = Path(__file__).parent
rng = random.Random(2024)

N_ENTITIES, N_QA = 48, 14  # 14 of 48 (29 %) also get QA; the other 34 live in documents only
PLACEMENTS = ["own", "news", "digest"]  # where the facts an entity's own doc leaves out are stated
AWAY = {"digest": ["registered", "share_capital"]}  # "news": one of employees / founder (drawn)
DIGEST_ID = "digest-annual-register"
PAIR_FILLERS = [FILLERS["NEWS"][i] for i in (1, 2, 4)]  # the ones that name no single company


def unique_numbers(n, draw, taken=()):
    """n distinct values from draw(), none in taken."""
    out, seen = [], set(taken)
    while len(out) < n:
        v = draw()
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def balanced(pool, n):
    values = (pool * n)[:n]
    rng.shuffle(values)
    return values


def make_people(n):
    genders = balanced(["She", "He"], n)
    female, male = iter(rng.sample(FEMALE_FIRST, n // 2)), iter(rng.sample(MALE_FIRST, n // 2))
    surnames = rng.sample(SURNAMES, n)
    return [(f"{next(female if g == 'She' else male)} {s}", g) for g, s in zip(genders, surnames)]


def make_dates(years):
    """One unique 'D Month YYYY' date per year (year given)."""
    seen, out = set(), []
    for y in years:
        while True:
            d = f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {y}"
            if d not in seen:
                seen.add(d)
                out.append(d)
                break
    return out


def make_numbers(n):
    """Employee counts (8 to 12,000, never year-like) and share capitals (a multiple of 1,000 crowns)."""
    def staff():
        return round(math.exp(rng.uniform(math.log(8), math.log(12000))))

    def capital():
        thousands = math.exp(rng.uniform(math.log(50), math.log(90000)))
        return 1000 * int(round(thousands, -1 if rng.random() < .5 else 0))

    employees = unique_numbers(n, staff, taken=range(1800, 2031))
    capitals = unique_numbers(n, capital)
    return [f"{v:,}" for v in employees], [f"{v:,}" for v in capitals]


def make_entities():
    n = N_ENTITIES
    names = [o + rng.choice(COMPANY_ENDINGS) + " " + rng.choice(COMPANY_SUFFIXES)
             for o in rng.sample(COMPANY_ONSETS, n)]
    towns = [s + rng.choice(TOWN_ENDS) for s in rng.sample(TOWN_STEMS, n)]
    people = make_people(n)
    founded = rng.sample(range(1850, 2016), n)
    registered = make_dates([min(y + rng.randint(1, 30), 2023) for y in founded])
    employees, capitals = make_numbers(n)
    sectors, forms = balanced(SECTORS, n), balanced(LEGAL_FORMS, n)
    styles = balanced(list(STYLES), n)
    entities = []
    for i, name in enumerate(names):
        placement = PLACEMENTS[i % 3]
        away = [rng.choice(["employees", "founder"])] if placement == "news" else AWAY.get(placement, [])
        a = "an" if sectors[i][0] in "aeiou" else "a"
        entities.append({
            "name": name, "split": "qa" if i < N_QA else "corpus_only", "sector": sectors[i],
            "a_sector": f"{a} {sectors[i]}", "legal_form": forms[i], "founder": people[i][0],
            "P": people[i][1], "headquarters": towns[i], "founded": str(founded[i]),
            "employees": employees[i], "share_capital": capitals[i], "registered": registered[i],
            "placement": placement, "away": away, "style": styles[i],
        })
    return entities


def slug(name):
    return name.lower().replace(" ", "-")


def prose_doc(ent, present):
    """Profile, report or news style: the opener names the company, later sentences use pronouns."""
    title, lead, fillers = STYLES[ent["style"]]
    middle = [rng.choice(FACT_SENTENCES[a]) for a in ATTRIBUTES if a in present and a in FACT_SENTENCES]
    rng.shuffle(middle)
    sentences = ([lead] if lead else []) + [rng.choice(OPENERS)] + middle + rng.sample(FILLERS[fillers], 3)
    text = " ".join(sentences).format(bio=rng.choice(BIOS), **ent)
    if ent["style"] == "news":
        text = f"{ent['headquarters'].upper()} - {text}"
    return title.format(**ent), text


def extract_doc(ent, present):
    """Register-extract style: labelled fields, then remarks that refer back with pronouns."""
    title, lead, fillers = STYLES["extract"]
    fields = [EXTRACT_FIELDS[a] for a in EXTRACT_FIELDS if a in present]
    remarks = rng.sample(FILLERS[fillers], 3)
    if "founder" in present:
        remarks.append("Its founder " + rng.choice(BIOS) + ".")
    text = " ".join([lead] + fields + ["Remarks:"] + remarks).format(**ent)
    return title.format(**ent), text


def entity_doc(ent):
    present = [a for a in ATTRIBUTES if a not in ent["away"]]
    build = extract_doc if ent["style"] == "extract" else prose_doc
    title, text = build(ent, present)
    return {"id": f"{ent['style']}-{slug(ent['name'])}", "title": title, "text": text}, present


def pair_docs(entities):
    """News items naming two companies; each states the one fact its companies' own docs leave out."""
    movers = [e for e in entities if e["placement"] == "news"]
    assert len(movers) % 2 == 0
    docs, facts = [], []
    for k in range(0, len(movers), 2):
        a, b = movers[k], movers[k + 1]
        title, body = rng.choice(PAIR_NEWS)
        fill = {"a": a["name"], "b": b["name"], "a_hq": a["headquarters"], "b_hq": b["headquarters"],
                "a_clause": PAIR_CLAUSES[a["away"][0]].format(**a),
                "b_clause": PAIR_CLAUSES[b["away"][0]].format(**b)}
        text = body.format(**fill) + " " + rng.choice(PAIR_FILLERS)
        doc_id = f"news-pair-{k // 2 + 1:02d}"
        docs.append({"id": doc_id, "title": title.format(**fill), "text": text})
        facts += [(doc_id, a["name"], a["away"][0]), (doc_id, b["name"], b["away"][0]),
                  (doc_id, a["name"], "headquarters")]
        if "{b_hq}" in body:
            facts.append((doc_id, b["name"], "headquarters"))
    return docs, facts


def digest_doc(entities):
    """The long annual register digest: every company's entry date, legal form and share capital."""
    parts, facts = [DIGEST_INTRO], []
    for sector in sorted({e["sector"] for e in entities}):
        parts.append(SECTOR_INTRO.format(sector=sector))
        for ent in sorted((e for e in entities if e["sector"] == sector), key=lambda e: e["name"]):
            entry = rng.choice(DIGEST_ENTRIES)
            parts.append(" ".join([entry] + rng.sample(DIGEST_REMARKS, 4)).format(**ent))
            stated = ["legal_form", "registered", "share_capital"]
            facts += [(DIGEST_ID, ent["name"], a) for a in stated + ["headquarters"] * ("{headquarters}" in entry)]
    parts.append(DIGEST_CLOSING)
    return {"id": DIGEST_ID, "title": DIGEST_TITLE, "text": "\n\n".join(parts)}, facts


def make_corpus(entities):
    """All documents, plus {(entity, attribute): [doc ids stating it]}."""
    corpus, where = [], {}
    for ent in entities:
        doc, present = entity_doc(ent)
        corpus.append(doc)
        for attr in present:
            where.setdefault((ent["name"], attr), []).append(doc["id"])
    news, news_facts = pair_docs(entities)
    digest, digest_facts = digest_doc(entities)
    for doc_id, name, attr in news_facts + digest_facts:
        where.setdefault((name, attr), []).append(doc_id)
    corpus += news + [digest]
    corpus += [{"id": f"background-{i + 1:02d}", "title": t, "text": x} for i, (t, x) in enumerate(DISTRACTORS)]
    return corpus, {k: sorted(set(v)) for k, v in where.items()}


def qa_rows(entities, phrasings, split, where):
    rows = []
    for ent in entities:
        for attr in ATTRIBUTES:
            value = ent[attr]
            docs = where[(ent["name"], attr)]
            location = "own" if any(d.endswith(slug(ent["name"])) for d in docs) else docs[0].split("-")[0]
            for p in phrasings:
                rows.append({"question": QUESTIONS[attr][p].format(name=ent["name"]),
                             "answer": ANSWERS[attr].format(value=value, name=ent["name"]), "value": value,
                             "entity": ent["name"], "attribute": attr, "split": split,
                             "docs": docs, "fact_location": location})
    return rows


def check(entities, corpus, where):
    for attr in ("name", "founder", "headquarters", "founded", "employees", "share_capital", "registered"):
        values = [e[attr] for e in entities]
        assert len(set(values)) == len(values), attr
    assert all((e["name"], a) in where for e in entities for a in ATTRIBUTES), "a fact no document states"
    for doc in corpus:
        words = len(doc["text"].split())
        assert (words > 3000) if doc["id"] == DIGEST_ID else (60 <= words <= 200), (doc["id"], words)


def write_jsonl(filename, rows):
    with open(OUT_DIR / filename, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def main():
    entities = make_entities()
    corpus, where = make_corpus(entities)
    check(entities, corpus, where)
    qa = [e for e in entities if e["split"] == "qa"]
    only = [e for e in entities if e["split"] == "corpus_only"]
    outputs = {
        "corpus.jsonl": corpus,
        "train.jsonl": qa_rows(qa, [0, 1], "train", where),
        "dev.jsonl": qa_rows(qa, [2], "dev", where),
        "test.jsonl": qa_rows(qa, [3], "test", where),
        "corpus_only_test.jsonl": qa_rows(only, [3], "corpus_only_test", where),
    }
    for filename, rows in outputs.items():
        write_jsonl(filename, rows)
        print(f"{filename:<24} {len(rows):>4} rows")
    for split, ents in (("qa", qa), ("corpus_only", only)):
        print(f"{split:<12} {len(ents):>2} entities: {', '.join(e['name'] for e in ents)}")


if __name__ == "__main__":
    main()
