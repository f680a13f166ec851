//! The demo roster of 八角亭小区, generated the same on every machine.
use chrono::{Datelike, NaiveDate};

use super::RESIDENTS;
use crate::domain;

/// A small deterministic generator (xorshift), so the roster is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "宋", "孟", "许", "阮", "程", "舒", "乐", "夏", "焦", "成", "方",
];
const GIVEN_M: &[&str] = &[
    "建国", "志强", "国华", "德明", "少华", "文斌", "海涛", "明", "伟", "军", "勇", "浩然", "子轩",
    "宇航", "家豪",
];
const GIVEN_F: &[&str] = &[
    "秀英", "桂兰", "玉梅", "淑珍", "丽华", "红梅", "敏", "静", "芳", "婷", "雨涵", "欣怡", "梓涵",
    "思琪", "佳慧",
];

struct Person {
    name: String,
    male: bool,
    birth: NaiveDate,
    relation: &'static str,
    tags: Vec<&'static str>,
}

/// A person born in `first_year` or the `span - 1` years after, a man with `male_percent` chance.
fn person(
    rng: &mut Rng,
    surname: &str,
    male_percent: u64,
    first_year: i32,
    span: u64,
    relation: &'static str,
) -> Person {
    let male = rng.chance(male_percent);
    let birth_year = first_year + rng.below(span) as i32;
    let given = if male {
        rng.pick(GIVEN_M)
    } else {
        rng.pick(GIVEN_F)
    };
    let birth = NaiveDate::from_ymd_opt(
        birth_year,
        1 + rng.below(12) as u32,
        1 + rng.below(28) as u32,
    )
    .unwrap_or_default();
    Person {
        name: format!("{surname}{given}"),
        male,
        birth,
        relation,
        tags: Vec::new(),
    }
}

fn id_number(birth: NaiveDate, seq: u32, male: bool) -> String {
    // The 17th digit is odd for men and even for women.
    let order = (seq * 2 + u32::from(male)) % 1000;
    let first17 = format!("421224{}{order:03}", birth.format("%Y%m%d"));
    format!("{first17}{}", domain::id_check_char(&first17))
}

/// Generates the 八角亭小区 roster as CSV: realistic households summing to exactly 1,258 residents.
pub fn generate_roster() -> String {
    let mut rng = Rng(0x5eed_1258_2021_0122);
    let mut out = String::from(
        "household_ref,compound,building,address,name,gender,birth_date,relation,phone,id_number,tags\n",
    );
    let mut total = 0;
    let mut seq = 0u32;
    let mut n = 0;
    while total < RESIDENTS {
        n += 1;
        let building = 1 + (n - 1) / 40;
        let address = format!(
            "八角亭小区{building}栋{}单元{}0{}",
            1 + (n % 4),
            1 + (n % 6),
            1 + (n % 3)
        );
        let surname = rng.pick(SURNAMES);
        let mut members: Vec<Person> = Vec::new();
        if n == 1 {
            // 程大娘: 90, alone, hard of hearing, unsteady on her feet.
            let mut p = person(&mut rng, "程", 0, 1936, 1, "head");
            p.name = "程桂兰".into();
            p.birth = NaiveDate::from_ymd_opt(1936, 3, 8).unwrap_or_default();
            p.tags = vec!["living_alone", "hearing_impaired", "limited_mobility"];
            members.push(p);
        } else {
            match rng.below(100) {
                // An old person living alone.
                0..=9 => {
                    let mut p = person(&mut rng, surname, 35, 1936, 25, "head");
                    p.tags.push("living_alone");
                    if rng.chance(30) {
                        p.tags.push("chronic_illness");
                    }
                    if rng.chance(15) {
                        p.tags.push("hearing_impaired");
                    }
                    if rng.chance(10) {
                        p.tags.push("low_income");
                    }
                    members.push(p);
                }
                // An old couple.
                10..=29 => {
                    let year = 1938 + rng.below(20) as i32;
                    let mut a = person(&mut rng, surname, 100, year, 1, "head");
                    if rng.chance(15) {
                        a.tags.push("limited_mobility");
                    }
                    members.push(a);
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 2, 1, "spouse"));
                }
                // Grandparents raising a grandchild whose parents work away (留守儿童).
                30..=37 => {
                    let year = 1950 + rng.below(12) as i32;
                    members.push(person(&mut rng, surname, 100, year, 1, "head"));
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 1, 1, "spouse"));
                    let mut child = person(&mut rng, surname, 50, 2012, 8, "grandchild");
                    child.tags.push("child_left_behind");
                    members.push(child);
                }
                // A family with children, sometimes with a grandparent.
                _ => {
                    let year = 1970 + rng.below(25) as i32;
                    members.push(person(&mut rng, surname, 100, year, 1, "head"));
                    let b_surname = rng.pick(SURNAMES);
                    members.push(person(&mut rng, b_surname, 0, year + 1, 1, "spouse"));
                    for _ in 0..(1 + rng.below(2)) {
                        members.push(person(&mut rng, surname, 50, year + 24, 8, "child"));
                    }
                    if rng.chance(25) {
                        let mut g = person(&mut rng, surname, 40, 1935, 15, "parent");
                        if rng.chance(20) {
                            g.tags.push("disabled");
                        }
                        members.push(g);
                    }
                }
            }
        }
        members.truncate(RESIDENTS - total);
        for p in &members {
            seq += 1;
            let phone = if p.birth.year_ce().1 < 2008 {
                format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "BJT-{n:04},八角亭小区,{building}栋,{address},{},{},{},{},{phone},{},{}\n",
                p.name,
                if p.male { "男" } else { "女" },
                p.birth,
                p.relation,
                id_number(p.birth, seq, p.male),
                p.tags.join(";")
            ));
        }
        total += members.len();
    }
    out
}
