//! The dashboard's two languages: Chinese by default, English on request
//! (`?lang=en`, remembered in a cookie). Strings stay next to where they are
//! shown, as `lang.t("中文", "English")`; the domain's enum names are here.
use axum::http::HeaderMap;

use linli_proto::issues::v1 as ipb;
use linli_proto::people::v1 as ppb;

pub const COOKIE: &str = "linli_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// The language a request asked for: `?lang=` first, then the cookie.
    pub fn of(headers: &HeaderMap, query: Option<&str>) -> Lang {
        let asked = query
            .or_else(|| super::session::cookie(headers, COOKIE))
            .unwrap_or("zh");
        Lang::parse(asked).unwrap_or_default()
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The HTML `lang` attribute.
    pub fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn state(self, state: i32) -> &'static str {
        use ipb::IssueState as S;
        match S::try_from(state).unwrap_or(S::Unspecified) {
            S::Reported => self.t("已上报", "Reported"),
            S::Acknowledged => self.t("已受理", "Acknowledged"),
            S::Claimed => self.t("已认领", "Claimed"),
            S::InProgress => self.t("办理中", "In progress"),
            S::Resolved => self.t("已办结", "Resolved"),
            S::Verified => self.t("已确认", "Verified"),
            S::Reopened => self.t("重新办理", "Reopened"),
            S::Rejected => self.t("不予受理", "Rejected"),
            S::Duplicate => self.t("重复", "Duplicate"),
            S::ClosedUnconfirmed => self.t("逾期未确认办结", "Closed unconfirmed"),
            S::Unspecified => "—",
        }
    }

    /// A state by its stored name (as statistics count them).
    pub fn state_key(self, key: &str) -> &'static str {
        let n = match key {
            "reported" => 1,
            "acknowledged" => 2,
            "claimed" => 3,
            "in_progress" => 4,
            "resolved" => 5,
            "verified" => 6,
            "reopened" => 7,
            "rejected" => 8,
            "duplicate" => 9,
            "closed_unconfirmed" => 10,
            _ => 0,
        };
        self.state(n)
    }

    pub fn three_most_key(self, key: &str) -> &'static str {
        match key {
            "most_worrying" => self.t("最操心", "Most worrying"),
            "most_vexing" => self.t("最烦心", "Most vexing"),
            "most_distressing" => self.t("最揪心", "Most distressing"),
            _ => self.t("未标记", "Unmarked"),
        }
    }

    pub fn three_most(self, mark: i32) -> &'static str {
        use ipb::ThreeMost as T;
        match T::try_from(mark).unwrap_or(T::Unspecified) {
            T::MostWorrying => self.three_most_key("most_worrying"),
            T::MostVexing => self.three_most_key("most_vexing"),
            T::MostDistressing => self.three_most_key("most_distressing"),
            T::Unspecified => "",
        }
    }

    pub fn category(self, category: i32) -> &'static str {
        use ipb::Category as C;
        match C::try_from(category).unwrap_or(C::Unspecified) {
            C::Road => self.t("道路", "Roads"),
            C::Drainage => self.t("排水", "Drainage"),
            C::Sanitation => self.t("环境卫生", "Sanitation"),
            C::PublicSafety => self.t("公共安全", "Public safety"),
            C::HousingRepair => self.t("房屋维修", "Housing repair"),
            C::Epidemic => self.t("疫情防控", "Epidemic"),
            C::Livelihood => self.t("民生保障", "Livelihood"),
            C::Other => self.t("其他", "Other"),
            C::Unspecified => "—",
        }
    }

    pub fn event(self, kind: i32) -> &'static str {
        use ipb::EventKind as E;
        match E::try_from(kind).unwrap_or(E::Unspecified) {
            E::Reported => self.t("上报", "Reported"),
            E::Acknowledged => self.t("受理", "Acknowledged"),
            E::Claimed => self.t("认领", "Claimed"),
            E::Unclaimed => self.t("放弃认领", "Unclaimed"),
            E::Reassigned => self.t("改派", "Reassigned"),
            E::Started => self.t("开始办理", "Work started"),
            E::Resolved => self.t("办结", "Resolved"),
            E::Confirmed => self.t("居民确认", "Confirmed"),
            E::Reopened => self.t("重新办理", "Reopened"),
            E::Rejected => self.t("不予受理", "Rejected"),
            E::MarkedDuplicate => self.t("标记重复", "Marked duplicate"),
            E::SupervisionNote => self.t("督办", "Supervision note"),
            E::Escalated => self.t("逾期升级", "Escalated"),
            E::AutoClosed => self.t("自动办结", "Closed automatically"),
            E::WatcherJoined => self.t("关注", "Watcher joined"),
            E::Unspecified => "—",
        }
    }

    pub fn care_level(self, level: i32) -> &'static str {
        use ppb::CareLevel as L;
        match L::try_from(level).unwrap_or(L::Unspecified) {
            L::None => self.t("一般", "None"),
            L::Watch => self.t("关注", "Watch"),
            L::Priority => self.t("重点", "Priority"),
            L::Intensive => self.t("特别关爱", "Intensive"),
            L::Unspecified => "—",
        }
    }

    pub fn tag(self, tag: i32) -> &'static str {
        use ppb::VulnerabilityTag as V;
        match V::try_from(tag).unwrap_or(V::Unspecified) {
            V::LivingAlone => self.t("独居", "Living alone"),
            V::Elderly => self.t("高龄", "Elderly (80+)"),
            V::HearingImpaired => self.t("听力障碍", "Hearing impaired"),
            V::LimitedMobility => self.t("行动不便", "Limited mobility"),
            V::Disabled => self.t("残疾", "Disabled"),
            V::ChronicIllness => self.t("慢性病", "Chronic illness"),
            V::LowIncome => self.t("低收入", "Low income"),
            V::ChildLeftBehind => self.t("留守儿童", "Child left behind"),
            V::Unspecified => "—",
        }
    }

    /// Why a household is cared for, in the page's language: the default care
    /// rules' names are known; a county's own rules are shown as it named them.
    pub fn care_reason(self, reason: &str) -> &str {
        let zh = match reason {
            "living alone and aged 80 or over" => "独居且年满 80 岁",
            "living alone with a disability or illness" => "独居且有残疾或疾病",
            "aged 80 or over" => "年满 80 岁",
            "disabled or of limited mobility" => "残疾或行动不便",
            "other vulnerability" => "其他困难情形",
            _ => return reason,
        };
        match self {
            Lang::Zh => zh,
            Lang::En => reason,
        }
    }

    /// How long, in the largest whole unit: `3 天` / `3 days`.
    pub fn duration(self, seconds: i64) -> String {
        let (n, zh, en) = if seconds >= 86_400 {
            (seconds / 86_400, "天", "days")
        } else if seconds >= 3_600 {
            (seconds / 3_600, "小时", "hours")
        } else {
            ((seconds / 60).max(0), "分钟", "minutes")
        };
        match self {
            Lang::Zh => format!("{n} {zh}"),
            Lang::En => format!("{n} {en}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_both_names() {
        for n in 1..=10 {
            assert_ne!(Lang::Zh.state(n), "—", "{n}");
            assert_ne!(Lang::En.state(n), "—", "{n}");
        }
        assert_eq!(Lang::En.state_key("in_progress"), "In progress");
        assert_eq!(Lang::Zh.duration(3 * 86_400 + 5), "3 天");
        assert_eq!(Lang::En.duration(7_300), "2 hours");
    }

    #[test]
    fn care_reasons_read_in_the_pages_language() {
        let r = "living alone with a disability or illness";
        assert_eq!(Lang::Zh.care_reason(r), "独居且有残疾或疾病");
        assert_eq!(Lang::En.care_reason(r), r);
        // A county's own rule, as it named it.
        assert_eq!(Lang::Zh.care_reason("低保户"), "低保户");
    }

    #[test]
    fn the_query_wins_over_the_cookie_and_chinese_is_the_default() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h, None), Lang::Zh);
        h.insert("cookie", "linli_lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h, None), Lang::En);
        assert_eq!(Lang::of(&h, Some("zh")), Lang::Zh);
        assert_eq!(Lang::of(&h, Some("fr")), Lang::Zh);
    }
}
