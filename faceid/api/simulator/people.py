"""Plausible (fictional) Chinese identities for the FaceID simulator.

Everything here is synthetic: names are drawn from common characters, addresses from real district
prefixes with invented streets, and resident ID numbers are built so that their GB 11643-1999
check digit is valid and their embedded birthday and gender agree with the rest of the record.
Reviewers' tooling validates these numbers, so an invalid check digit would be a false alarm.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

# GB 11643-1999 (ISO 7064 MOD 11-2) weights for the first 17 digits, and the check character
# for each remainder (remainder 2 maps to 'X', which stands for 10).
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# The simulator's "today": fixed so that generated cases are fully deterministic.
REFERENCE_DATE = dt.date(2025, 10, 9)
PERMANENT = "长期"

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "慕容")
_GIVEN_MALE = "伟强磊军洋勇杰涛明超斌鹏辉刚健峰浩宇俊凯博文志建国华东亮林晨睿轩子然涵泽铭"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲婷雪慧颖琳倩欣怡晶佳蕾璐梦萱雨思诗涵悦月瑶琪"
_RACES = ("汉", "回", "满", "壮", "维吾尔", "苗", "彝", "土家", "藏", "蒙古", "朝鲜")
_STREETS = (
    "中关村大街", "人民路", "解放路", "建设路", "和平路", "文化路", "长江路", "新华路",
    "友谊路", "胜利路", "学府路", "光明街", "朝阳路", "青年路", "东风路", "迎宾大道",
)
_COMPOUNDS = ("", "", "阳光小区", "锦绣花园", "幸福里", "翠苑", "金色家园", "华府")

# (administrative division code, address prefix, issuing authority). Codes are real district
# codes so that the first six digits of a number match the address a reviewer reads.
_REGIONS: tuple[tuple[str, str, str], ...] = (
    ("110108", "北京市海淀区", "北京市公安局海淀分局"),
    ("110105", "北京市朝阳区", "北京市公安局朝阳分局"),
    ("310104", "上海市徐汇区", "上海市公安局徐汇分局"),
    ("310115", "上海市浦东新区", "上海市公安局浦东分局"),
    ("440305", "广东省深圳市南山区", "深圳市公安局南山分局"),
    ("440106", "广东省广州市天河区", "广州市公安局天河区分局"),
    ("330106", "浙江省杭州市西湖区", "杭州市公安局西湖分局"),
    ("510107", "四川省成都市武侯区", "成都市公安局武侯区分局"),
    ("420106", "湖北省武汉市武昌区", "武汉市公安局武昌分局"),
    ("320102", "江苏省南京市玄武区", "南京市公安局玄武分局"),
    ("610113", "陕西省西安市雁塔区", "西安市公安局雁塔分局"),
    ("370202", "山东省青岛市市南区", "青岛市公安局市南分局"),
    ("500103", "重庆市渝中区", "重庆市公安局渝中区分局"),
    ("430104", "湖南省长沙市岳麓区", "长沙市公安局岳麓分局"),
    ("350203", "福建省厦门市思明区", "厦门市公安局思明分局"),
    ("410105", "河南省郑州市金水区", "郑州市公安局金水分局"),
)


@dataclass(frozen=True)
class Person:
    """One synthetic card holder; every field is consistent with ``id_number``."""

    name: str
    gender: str  # "男" or "女", as printed on the card
    race: str
    birth: dt.date
    id_number: str
    address: str
    issued_by: str
    valid_start: dt.date
    valid_end: dt.date | None  # None means the card is valid permanently ("长期")

    @property
    def valid_date(self) -> str:
        """Validity as printed on the card back, e.g. "2015.05.15-2035.05.15"."""
        return format_valid_date(self.valid_start, self.valid_end)

    @property
    def birthday(self) -> dict[str, str]:
        """Birthday in the OCR result's shape: strings without leading zeros."""
        return {"day": str(self.birth.day), "month": str(self.birth.month),
                "year": str(self.birth.year)}


def id_check_digit(first17: str) -> str:
    """Return the GB 11643-1999 check character for the first 17 digits of a resident ID."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("expected exactly 17 digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def is_valid_id_number(number: str) -> bool:
    """True if ``number`` is an 18-character resident ID with a real birthday and check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return number[17].upper() == id_check_digit(number[:17])


def build_id_number(area_code: str, birth: dt.date, sequence: int) -> str:
    """Assemble an ID number; ``sequence`` (0..999) is odd for men and even for women."""
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + id_check_digit(first17)


def format_valid_date(start: dt.date, end: dt.date | None) -> str:
    """Card validity in the page's format; a permanent card ends in "长期"."""
    end_text = PERMANENT if end is None else f"{end:%Y.%m.%d}"
    return f"{start:%Y.%m.%d}-{end_text}"


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a non-leap target year
        return day.replace(year=day.year + years, day=28)


def _random_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randint(0, max(0, (end - start).days)))


def _validity_years(age_at_issue: int) -> int | None:
    """Statutory validity by age at issue (居民身份证法 art. 5); None means permanent."""
    if age_at_issue < 16:
        return 5
    if age_at_issue <= 25:
        return 10
    if age_at_issue <= 45:
        return 20
    return None


def _random_name(rng: random.Random, male: bool) -> str:
    surname = rng.choice(_COMPOUND_SURNAMES) if rng.random() < 0.03 else rng.choice(_SURNAMES)
    pool = _GIVEN_MALE if male else _GIVEN_FEMALE
    given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2))))
    return surname + given


def _random_address(rng: random.Random, prefix: str) -> str:
    compound = rng.choice(_COMPOUNDS)
    building, entrance = rng.randint(1, 30), rng.randint(1, 6)
    room = f"{rng.randint(1, 28)}0{rng.randint(1, 4)}"
    unit = f"{building}号楼{entrance}单元{room}室"
    return f"{prefix}{rng.choice(_STREETS)}{rng.randint(1, 399)}号{compound}{unit}"


def make_person(rng: random.Random) -> Person:
    """Draw one consistent identity from ``rng`` (deterministic for a seeded generator)."""
    area_code, prefix, authority = rng.choice(_REGIONS)
    birth = _random_date(rng, dt.date(1950, 1, 1), dt.date(2007, 12, 31))
    sequence = rng.randint(0, 999)
    male = sequence % 2 == 1
    # Cards are (re)issued from age 16 at the earliest, and never before the 2004 card series.
    first_issue = max(_add_years(birth, 16), dt.date(2004, 1, 1))
    valid_start = _random_date(rng, first_issue, REFERENCE_DATE - dt.timedelta(days=30))
    years = _validity_years(valid_start.year - birth.year)
    valid_end = None if years is None else _add_years(valid_start, years)
    return Person(
        name=_random_name(rng, male),
        gender="男" if male else "女",
        race=_RACES[0] if rng.random() < 0.9 else rng.choice(_RACES[1:]),
        birth=birth,
        id_number=build_id_number(area_code, birth, sequence),
        address=_random_address(rng, prefix),
        issued_by=authority,
        valid_start=valid_start,
        valid_end=valid_end,
    )


def person_for_seed(seed: int) -> Person:
    """Convenience wrapper: the identity for an integer seed."""
    return make_person(random.Random(seed))


def other_id_number(rng: random.Random, person: Person) -> str:
    """A different but still valid number for the same area and birthday (a user's edit)."""
    current = int(person.id_number[14:17])
    sequence = (current + 2 * rng.randint(1, 400)) % 1000  # keep parity, so gender still agrees
    return build_id_number(person.id_number[:6], person.birth, sequence)


def similar_name(rng: random.Random, name: str) -> str:
    """The name with its last character replaced, as a user correcting an OCR read might do."""
    pool = _GIVEN_MALE + _GIVEN_FEMALE
    replacement = rng.choice([c for c in pool if c != name[-1]])
    return name[:-1] + replacement
