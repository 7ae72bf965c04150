//! The console's pages as askama templates (templates/console/*.html) and
//! the rows they show. Every field is already text or a number: the
//! templates only lay it out, and askama HTML-escapes every value (no
//! template marks anything `safe`). Gathers nothing from the cluster.

use askama::Template;

/// What every page's frame shows.
pub struct Chrome {
    pub bootstrap: String,
    pub read_only: bool,
    /// A line after a change ("Created topic 'orders'.").
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

pub struct BrokerRow {
    pub id: i32,
    pub address: String,
    pub rack: String,
    pub controller: bool,
    pub leaders: usize,
}

pub struct RateRow {
    pub name: String,
    pub rate: String,
}

#[derive(Template)]
#[template(path = "console/cluster.html")]
pub struct ClusterPage {
    pub chrome: Chrome,
    pub cluster_id: String,
    pub controller: String,
    pub brokers: Vec<BrokerRow>,
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: usize,
    pub offline: usize,
    pub source: String,
    pub broker_rates: Vec<RateRow>,
    pub topic_rates: Vec<RateRow>,
}

pub struct TopicRow {
    pub name: String,
    pub internal: bool,
    pub partitions: usize,
    pub replication_factor: usize,
    pub records: String,
    pub size: String,
    pub under_replicated: usize,
    pub overrides: String,
}

/// Previous and next page links of a long list.
pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    /// The link up to `page=`, e.g. `/topics?q=x&page=`.
    pub base: String,
}

impl Pager {
    /// Page `page` (from 1, clamped) of `items`, `per_page` a page.
    pub fn paginate<T>(page: usize, per_page: usize, items: &[T], base: String) -> (Pager, &[T]) {
        let total = items.len();
        let pages = total.div_ceil(per_page).max(1);
        let page = page.clamp(1, pages);
        let start = ((page - 1) * per_page).min(total);
        let shown = &items[start..(start + per_page).min(total)];
        let pager = Pager {
            page,
            pages,
            total,
            base,
        };
        (pager, shown)
    }

    pub fn previous(&self) -> Option<String> {
        (self.page > 1).then(|| format!("{}{}", self.base, self.page - 1))
    }

    pub fn next(&self) -> Option<String> {
        (self.page < self.pages).then(|| format!("{}{}", self.base, self.page + 1))
    }
}

#[derive(Template)]
#[template(path = "console/topics.html")]
pub struct TopicsPage {
    pub chrome: Chrome,
    pub query: String,
    pub rows: Vec<TopicRow>,
    pub pager: Pager,
}

pub struct PartitionRow {
    pub partition: i32,
    pub leader: String,
    pub replicas: String,
    pub isr: String,
    pub start: String,
    pub end: String,
    pub size: String,
    pub under_replicated: bool,
}

pub struct ConfigRow {
    pub name: String,
    pub value: String,
    pub source: &'static str,
    pub is_override: bool,
}

pub struct TopicGroupRow {
    pub group: String,
    pub state: String,
    pub partitions: usize,
    pub lag: String,
}

#[derive(Template)]
#[template(path = "console/topic.html")]
pub struct TopicPage {
    pub chrome: Chrome,
    pub name: String,
    pub partition_count: usize,
    pub partitions: Vec<PartitionRow>,
    pub pager: Pager,
    pub configs: Vec<ConfigRow>,
    pub groups: Vec<TopicGroupRow>,
    pub groups_note: Option<String>,
}

/// Bytes as the page shows them.
pub struct Shown {
    /// `text`, `json`, `hex` or `null`.
    pub kind: &'static str,
    pub text: String,
    /// The whole length in bytes.
    pub size: usize,
    pub truncated: bool,
}

pub struct RecordView {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: String,
    pub key: Shown,
    pub headers: Vec<(String, Shown)>,
    pub value: Shown,
    /// Where the whole value can be downloaded (when truncated).
    pub download: String,
}

#[derive(Template)]
#[template(path = "console/messages.html")]
pub struct MessagesPage {
    pub chrome: Chrome,
    pub topic: String,
    /// Partition numbers for the chooser (all of them, up to a bound).
    pub partitions: Vec<i32>,
    pub partition: String,
    pub mode: String,
    pub offset: String,
    pub timestamp: String,
    pub count: usize,
    pub count_max: usize,
    pub records: Vec<RecordView>,
    pub notes: Vec<String>,
}

pub struct GroupRow {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub group_type: String,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
pub struct GroupsPage {
    pub chrome: Chrome,
    pub rows: Vec<GroupRow>,
}

pub struct MemberRow {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: String,
}

pub struct OffsetView {
    pub topic: String,
    pub partition: i32,
    pub committed: String,
    pub end: String,
    pub lag: String,
    pub member: String,
}

#[derive(Template)]
#[template(path = "console/group.html")]
pub struct GroupPage {
    pub chrome: Chrome,
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberRow>,
    pub offsets: Vec<OffsetView>,
    pub total_lag: String,
    /// No active members: offsets may be reset, the group deleted.
    pub inactive: bool,
    pub topics: Vec<String>,
}
