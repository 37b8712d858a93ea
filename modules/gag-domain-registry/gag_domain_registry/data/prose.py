"""Value pools and prose templates for the fictional "registry" domain (used by generate.py).

Everything here is invented. Templates name their slots after entity fields:
name, sector, legal_form, founder, headquarters, founded, employees, share_capital, registered,
plus a_sector (the sector with its article), P (the founder's pronoun, "She"/"He") and bio
(a founder biography fragment).
"""

# --- value pools ------------------------------------------------------------------------------
COMPANY_ONSETS = ["Arn", "Bel", "Cor", "Dal", "Esm", "Fal", "Gar", "Hal", "Ist", "Jel", "Kon",
                  "Lan", "Mer", "Nor", "Osp", "Pel", "Quin", "Ros", "Sel", "Tor", "Ulm", "Var",
                  "Wel", "Yar", "Zan", "Alb", "Bren", "Cal", "Dun", "Ely", "Fin", "Gil", "Hurl",
                  "Ivo", "Jun", "Kes", "Lis", "Mun", "Nim", "Orl", "Pim", "Ren", "Sten", "Tam",
                  "Ush", "Vin", "Wol", "Yor", "Zim", "Ard", "Bax", "Cov"]
COMPANY_ENDINGS = ["ora", "essa", "avin", "eth", "ando", "ivar", "ulen", "ica", "amar", "ovia"]
COMPANY_SUFFIXES = ["Holdings", "Group", "Works", "Industries", "Partners", "Trading",
                    "Enterprises", "Associates"]
TOWN_STEMS = ["Askel", "Brom", "Carrow", "Denn", "Elder", "Fenner", "Gorse", "Hather", "Ibble",
              "Jessel", "Kester", "Lamber", "Marrow", "Nettle", "Otter", "Pollen", "Quill",
              "Rother", "Sedge", "Tansel", "Umber", "Vetch", "Wold", "Amble", "Barrow", "Crane",
              "Dovel", "Ellis", "Fallow", "Glen", "Heron", "Iver", "Juniper", "Knap", "Lark",
              "Mallow", "Nab", "Oster", "Pike", "Rush", "Saffer", "Thistle", "Ulla", "Vern",
              "Whin", "Yew", "Abber", "Brack", "Cob", "Drake", "Eske", "Fowl"]
TOWN_ENDS = ["by", "holt", "wick", "stead", "ford", "mouth", "bridge", "thorpe", "field",
             "haven", "ham", "combe"]
FEMALE_FIRST = ["Marit", "Ilse", "Tamsin", "Orla", "Brisa", "Sunniva", "Edda", "Linnea",
                "Rowena", "Ysmay", "Clemence", "Dagny", "Fenella", "Hedda", "Isaura", "Jorunn",
                "Kerensa", "Liesl", "Mirela", "Nolwenn", "Oriane", "Saskia", "Teodora", "Valka",
                "Wilhelmina", "Aurelie"]
MALE_FIRST = ["Anselm", "Bertil", "Cathal", "Dagomar", "Evander", "Folke", "Gunnar", "Hamish",
              "Ingram", "Jasper", "Kasimir", "Leopold", "Magnus", "Nils", "Oswin", "Piers",
              "Radulf", "Soren", "Tobias", "Ulrich", "Vidar", "Wendel", "Alaric", "Bram",
              "Caspian", "Emeric"]
SURNAMES = ["Holstede", "Brockhaven", "Trellwyn", "Ardweller", "Vasskind", "Merriloe",
            "Oakenshaw", "Pennistane", "Quarrington", "Rathmoor", "Sellwood", "Tarrowby",
            "Underhill", "Vantongeren", "Wyndlesham", "Ashborough", "Blenkiron", "Castellane",
            "Dewhirst", "Eskerby", "Farrowgate", "Gilleland", "Haverstock", "Illingworth",
            "Jessop-Vane", "Kirkendale", "Lindqvist-Hale", "Mortlake", "Nettleford", "Ormerod",
            "Pettigrew-Lund", "Ravensholt", "Stallbrass", "Thackeray-Moss", "Umfreville",
            "Varley-Quinn", "Wetherall", "Yelverton", "van Drommel", "de Marrec", "ter Hollen",
            "van Osterdyke", "de Quillan", "ter Braake", "Abelard", "Birkenshaw", "Corbally",
            "Delacourt", "Elphinstone", "Fotheringay", "Gowerland", "Hollingdrake"]
SECTORS = ["shipbuilding", "textiles", "brewing", "logistics", "software", "pharmaceuticals",
           "mining", "insurance", "furniture", "glassmaking", "publishing", "agriculture"]
LEGAL_FORMS = ["public limited company", "private limited company", "cooperative society",
               "limited partnership", "partnership limited by shares"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

# --- questions and answers: phrasings 0+1 = train, 2 = dev, 3 = test -----------------------------
QUESTIONS = {
    "sector": ["Which sector does {name} operate in?", "In what industry is the company {name} active?",
               "What line of business is {name} in?", "{name} works in which sector?"],
    "legal_form": ["What is the legal form of {name}?", "How is the company {name} legally organised?",
                   "Under which legal form is {name} registered?",
                   "{name} is registered as what kind of legal entity?"],
    "founder": ["Who founded {name}?", "Which person established the company {name}?",
                "Who was the founder of {name}?", "{name} was founded by whom?"],
    "headquarters": ["Where is {name} headquartered?",
                     "In which town does the company {name} have its head office?",
                     "What is the location of {name}'s headquarters?",
                     "{name} has its headquarters in which town?"],
    "founded": ["In what year was {name} founded?", "When was the company {name} established?",
                "What is the founding year of {name}?", "{name} was founded in which year?"],
    "employees": ["How many employees does {name} have?", "How many people work for the company {name}?",
                  "What is the number of staff employed by {name}?", "{name} employs how many people?"],
    "share_capital": ["What is the share capital of {name}?",
                      "How much share capital does the company {name} hold?",
                      "How large is {name}'s registered share capital?",
                      "{name} has a share capital of how many crowns?"],
    "registered": ["On what date was {name} entered in the company register?",
                   "When was the company {name} registered?", "What is the registration date of {name}?",
                   "{name} was registered on which date?"],
}
ANSWERS = {
    "sector": "{name} operates in the {value} sector.",
    "legal_form": "{name} is a {value}.",
    "founder": "{name} was founded by {value}.",
    "headquarters": "{name} is headquartered in {value}.",
    "founded": "{name} was founded in {value}.",
    "employees": "{name} employs {value} people.",
    "share_capital": "{name} has a share capital of {value} crowns.",
    "registered": "{name} was entered in the company register on {value}.",
}
ATTRIBUTES = list(QUESTIONS)

# --- entity documents: the first sentence names the company, later ones use pronouns ------------
OPENERS = ["{name} is {a_sector} business headquartered in {headquarters}.",
           "{name}, {a_sector} company, has its head office in {headquarters}.",
           "Based in {headquarters}, {name} works in the {sector} sector.",
           "{name} is active in the {sector} sector from its headquarters in {headquarters}."]
FACT_SENTENCES = {
    "legal_form": ["It is organised as a {legal_form}.", "The company is registered as a {legal_form}.",
                   "Its legal form is that of a {legal_form}."],
    "founded": ["It was founded in {founded}.", "The company was established in {founded}.",
                "Its history goes back to {founded}, the year it was founded."],
    "founder": ["Its founder is {founder}. {P} {bio}.", "The company was started by {founder}. {P} {bio}.",
                "{founder} founded the business. {P} {bio}."],
    "employees": ["It employs {employees} people.", "The company has {employees} employees.",
                  "Its workforce numbers {employees} people."],
    "share_capital": ["Its share capital is {share_capital} crowns.",
                      "The company holds a share capital of {share_capital} crowns.",
                      "Its registered share capital stands at {share_capital} crowns."],
    "registered": ["It was entered in the company register on {registered}.",
                   "The company was registered on {registered}.",
                   "Its entry in the register dates from {registered}."],
}
BIOS = ["had trained as an engineer before going into business", "ran the firm for more than two decades",
        "later served on the regional chamber of commerce", "started with a single rented workshop",
        "remained on the board until retirement", "had worked abroad for several years beforehand"]
EXTRACT_FIELDS = {"legal_form": "Legal form: {legal_form}.", "sector": "Sector: {sector}.",
                  "headquarters": "Registered office: {headquarters}.",
                  "registered": "Date of entry: {registered}.",
                  "share_capital": "Share capital: {share_capital} crowns.",
                  "founded": "Year founded: {founded}.", "founder": "Founder: {founder}.",
                  "employees": "Employees at last filing: {employees}."}
STYLES = {  # title, first line(s) before the facts, fillers drawn after them
    "profile": ("Company profile: {name}", "", "GENERIC"),
    "extract": ("Company register extract: {name}", "Company register extract for {name}.", "EXTRACT"),
    "report": ("Annual report, company overview: {name}", "From the annual report of {name}.", "REPORT"),
    "news": ("Business news: {name}", "", "NEWS"),
}
FILLERS = {
    "GENERIC": ["The company publishes its accounts every spring and has never missed a filing deadline.",
                "It sells mainly to customers in the surrounding provinces and a few export markets.",
                "Its board meets regularly in the same building that houses its main offices.",
                "Like many firms of its size, it relies on a small number of long-standing suppliers.",
                "The company describes its strategy as slow, steady growth without large acquisitions.",
                "It has renovated its main premises twice, most recently to improve energy efficiency.",
                "Staff and management at the company have a reputation for cooperative relations.",
                "The firm sponsors a vocational training programme for school leavers in its home town."],
    "EXTRACT": ["No insolvency proceedings are recorded against the company.",
                "Its annual accounts for the last financial year have been filed.",
                "No charges or mortgages are registered over its assets.",
                "The company has not changed its name since its entry in the register.",
                "Its directors have confirmed their addresses for service this year."],
    "REPORT": ["The board thanks all employees for another year of steady work.",
               "Management expects demand to remain stable over the coming year.",
               "The auditors raised no material concerns about the accounts.",
               "Investment this year went mainly into equipment and staff training.",
               "The company will keep its dividend policy unchanged."],
    "NEWS": ["A spokesperson said the company had no plans to change its strategy.",
             "Local officials welcomed the announcement.",
             "Analysts described the move as cautious but sensible.",
             "The company declined to comment on rumours of a takeover.",
             "Shares in comparable firms were little changed after the news.",
             "It has announced plans to modernise its main site.",
             "It has opened a new training centre for apprentices."],
}

# --- news items naming two companies: they carry one fact of each that its own doc leaves out -----
PAIR_CLAUSES = {"employees": "which employs {employees} people", "founder": "the firm founded by {founder}"}
PAIR_NEWS = [
    ("{a} and {b} sign supply agreement",
     "{a} has signed a five-year supply agreement with {b}. {a}, {a_clause}, will deliver goods and "
     "services to {b} from its site in {a_hq}. {b}, {b_clause}, said the deal would secure work at its "
     "headquarters in {b_hq} for years to come. Neither company disclosed the value of the contract."),
    ("{a} and {b} form joint venture",
     "Two regional firms, {a} and {b}, have agreed to form a joint venture. {b}, {b_clause}, will hold "
     "the larger share of the new venture, while {a}, {a_clause}, will provide premises near {a_hq}. "
     "The partners expect the venture to begin trading next year, subject to approval by the registry."),
    ("{a} settles dispute with {b}",
     "A long-running dispute between {a} and {b} has been settled out of court. {a}, {a_clause}, had "
     "claimed that a shared warehouse contract was breached. {b}, {b_clause}, denied the claim but agreed "
     "to new terms. Lawyers for both sides said the settlement closes the matter for good."),
]

# --- the long document: an annual register digest (> 3,000 words) --------------------------------
DIGEST_TITLE = "Annual Register Digest"
DIGEST_INTRO = (
    "This digest summarises the entries of the company register for the past reporting year. It is "
    "published by the registry so that creditors, employees, journalists and members of the public can "
    "follow the state of registered firms without consulting each individual file. For every company the "
    "digest restates the date of its entry in the register, its legal form and its declared share "
    "capital, followed by remarks on the filings the registry received during the year. Companies are "
    "grouped by sector and listed alphabetically within each sector. Figures for share capital are given "
    "in crowns, as declared by the companies themselves; the registry does not audit them. Remarks are "
    "drawn from the filings and do not imply any wrongdoing. Readers who need a certified extract should "
    "request one from the registry office, since the digest is provided for information only.")
SECTOR_INTRO = ("Sector: {sector}. The registry received the annual returns of the following {sector} "
                "companies. Filings in this sector were, on the whole, complete and on time.")
DIGEST_ENTRIES = [
    "{name} ({legal_form}) was entered in the register on {registered}. Its share capital is recorded "
    "as {share_capital} crowns.",
    "Entry for {name}: registered on {registered} as a {legal_form}, with a share capital of "
    "{share_capital} crowns.",
    "{name} appears in the register from {registered}. The company, a {legal_form} based in "
    "{headquarters}, declares a share capital of {share_capital} crowns.",
]
DIGEST_REMARKS = ["It filed its annual return within the statutory period.",
                  "It notified the registry of a change of auditor during the year.",
                  "The company's directors confirmed that no shares were transferred.",
                  "It has submitted its statement of beneficial ownership.",
                  "No late-filing penalties were imposed on it.",
                  "It amended its articles of association to allow electronic meetings.",
                  "The company renewed its trading licence without conditions.",
                  "It reported no pending litigation.",
                  "Its registered office address was confirmed as unchanged.",
                  "It appointed a new company secretary in the autumn."]
DIGEST_CLOSING = (
    "The registry thanks the companies listed above for their cooperation. Corrections to this digest "
    "may be requested in writing within three months of publication. Entries are reproduced as filed; "
    "where a company has not yet filed its return for the year, the last filed figures are shown. The "
    "next digest will be published after the close of the following reporting year.")

DISTRACTORS = [  # registry background without any company facts
    ("How the company register works",
     "The company register is a public record of every firm that trades under a registered legal form. "
     "A new company is entered once the registry has checked its articles of association, the identity of "
     "its directors and the declared share capital. Each entry receives a date and remains open to public "
     "inspection. Changes to directors, address or capital must be notified within a set period, and the "
     "registry may strike off a firm that stops filing. Anyone may request a certified extract."),
    ("Filing deadlines explained",
     "Registered companies must file an annual return and their yearly accounts with the registry. Small "
     "firms may file abridged accounts, while public limited companies must include an auditor's report. "
     "Late filing leads to a penalty that grows with the length of the delay. Repeated failures can lead "
     "the registry to begin striking a company off the register, after a public notice that gives "
     "creditors and members time to object."),
    ("Glossary: share capital and legal forms",
     "Share capital is the amount that the owners of a company have committed in exchange for shares. "
     "A private limited company may not offer its shares to the public, whereas a public limited company "
     "may. In a cooperative society the members own and control the business together. A limited "
     "partnership has at least one partner with unlimited liability, and a partnership limited by shares "
     "combines features of a partnership and a company. Each form has its own filing rules."),
]
