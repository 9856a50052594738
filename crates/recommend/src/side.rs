//! What is known about each item besides who interacted with it: a text for the
//! sentence encoder, and its knowledge-graph relations.
//!
//! The relations are the edges the product graph holds for a product: its categories,
//! its maker (author, director, brand), its publisher, its decade, and, where the data
//! set links products to a knowledge graph (MovieLens-100K's Freebase triples), every
//! `(relation, tail)` of the product's entity. Each edge is `(relation, entity)`; two
//! items that share an entity are joined by a path `item → entity ← item`, which the
//! graph generator scores and the explanations put into words.

use std::collections::HashMap;

use shopgraph_import::Dataset;

use crate::data::Ids;

/// Side information per item index of one [`Ids`] space.
#[derive(Clone, Debug, Default)]
pub struct ItemSide {
    /// The product's title (its external id where the data set has no product record).
    pub titles: Vec<String>,
    /// Title, year, categories, maker and publisher in one line, for the encoder.
    pub texts: Vec<String>,
    /// Relation names, indexed by relation id.
    pub relations: Vec<String>,
    /// Entities: a display name where the source gives one, else the entity's key.
    pub entities: Vec<Entity>,
    /// Per item: its `(relation, entity)` edges.
    pub links: Vec<Vec<(u32, u32)>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub key: String,
    /// `None` for knowledge-graph ids without a label (Freebase's `m.0abc`).
    pub name: Option<String>,
}

impl ItemSide {
    /// The side information of `ids`'s items from the data set they were read from.
    pub fn from_dataset(dataset: &Dataset, ids: &Ids) -> ItemSide {
        let n = ids.items.len();
        let mut side = ItemSide {
            titles: ids.items.clone(),
            texts: ids.items.clone(),
            links: vec![Vec::new(); n],
            ..ItemSide::default()
        };
        let mut relation_index: HashMap<String, u32> = HashMap::new();
        let mut entity_index: HashMap<String, u32> = HashMap::new();
        let mut edge = |side: &mut ItemSide, item: usize, relation: &str, key: &str, name| {
            let r = *relation_index.entry(relation.to_owned()).or_insert_with(|| {
                side.relations.push(relation.to_owned());
                (side.relations.len() - 1) as u32
            });
            let e = *entity_index.entry(format!("{relation}\u{1f}{key}")).or_insert_with(|| {
                side.entities.push(Entity { key: key.to_owned(), name });
                (side.entities.len() - 1) as u32
            });
            if !side.links[item].contains(&(r, e)) {
                side.links[item].push((r, e));
            }
        };

        let category_names: HashMap<&str, &str> =
            dataset.categories.iter().map(|c| (c.key.as_str(), c.name.as_str())).collect();
        for product in &dataset.products {
            let Some(item) = ids.item(&product.sku) else { continue };
            let item = item as usize;
            let mut text = product.title.clone();
            if let Some(year) = product.year {
                text.push_str(&format!(" ({year})"));
                let decade = format!("{}s", year - year.rem_euclid(10));
                edge(&mut side, item, "decade", &decade, Some(decade.clone()));
            }
            let mut names = Vec::new();
            for key in &product.category_keys {
                let name = category_names.get(key.as_str()).copied().unwrap_or(key);
                names.push(name);
                edge(&mut side, item, "category", key, Some(name.to_owned()));
            }
            if !names.is_empty() {
                text.push_str(&format!(". {}", names.join(", ")));
            }
            if let Some(maker) = &product.maker {
                text.push_str(&format!(". By {}", maker.name));
                edge(&mut side, item, "maker", &maker.key, Some(maker.name.clone()));
            }
            if let Some(publisher) = &product.publisher {
                text.push_str(&format!(". {}", publisher.name));
                edge(&mut side, item, "publisher", &publisher.key, Some(publisher.name.clone()));
            }
            side.titles[item] = product.title.clone();
            side.texts[item] = text;
        }

        // Knowledge-graph triples whose head is a product's entity.
        let mut items_of_entity: HashMap<&str, Vec<usize>> = HashMap::new();
        for (sku, entity) in &dataset.product_entities {
            if let Some(item) = ids.item(sku) {
                items_of_entity.entry(entity.as_str()).or_default().push(item as usize);
            }
        }
        for triple in &dataset.triples {
            if let Some(items) = items_of_entity.get(triple.head.as_str()) {
                for &item in items {
                    edge(&mut side, item, &triple.relation, &triple.tail, None);
                }
            }
        }
        side
    }

    pub fn n_items(&self) -> usize {
        self.links.len()
    }

    /// The relation as words in "the same …": `film.film.directed_by` → "director".
    pub fn relation_words(&self, relation: u32) -> String {
        let name = &self.relations[relation as usize];
        let last = name.rsplit('.').next().unwrap_or(name);
        match last {
            "directed_by" => "director".to_owned(),
            "written_by" => "writer".to_owned(),
            "produced_by" => "producer".to_owned(),
            "production_companies" => "production company".to_owned(),
            "award_nomination" => "award nomination".to_owned(),
            "award_won" => "award".to_owned(),
            "films_in_this_genre" => "genre".to_owned(),
            other => other.replace('_', " "),
        }
    }
}

#[cfg(test)]
mod tests {
    use shopgraph_core::kg::Triple;
    use shopgraph_core::product::{Category, Maker, MakerKind, NewProduct};
    use shopgraph_import::Dataset;

    use super::ItemSide;
    use crate::Interactions;

    fn product(sku: &str, title: &str, maker: &str, categories: &[&str]) -> NewProduct {
        NewProduct {
            sku: sku.into(),
            title: title.into(),
            description: None,
            maker: Some(Maker {
                kind: MakerKind::Author,
                key: maker.to_lowercase(),
                name: maker.into(),
            }),
            publisher: None,
            year: Some(1994),
            image_url: None,
            price_cents: 100,
            currency: "EUR".into(),
            stock: 1,
            category_keys: categories.iter().map(|c| c.to_string()).collect(),
            attributes: None,
            synthetic_fields: Vec::new(),
            source: "test".into(),
        }
    }

    #[test]
    fn edges_come_from_attributes_and_triples() {
        let dataset = Dataset {
            categories: vec![Category {
                key: "sf".into(),
                name: "Science fiction".into(),
                parent_key: None,
            }],
            products: vec![
                product("a", "Dune", "Frank Herbert", &["sf"]),
                product("b", "Children of Dune", "Frank Herbert", &["sf"]),
            ],
            triples: vec![Triple {
                head: "m.1".into(),
                relation: "film.film.directed_by".into(),
                tail: "m.9".into(),
            }],
            product_entities: vec![("a".into(), "m.1".into())],
            ..Dataset::default()
        };
        let data = Interactions::from_records(
            [("u", "a"), ("u", "b")].map(|(u, i)| (u.to_owned(), i.to_owned(), 1.0, 0)),
        );
        let side = ItemSide::from_dataset(&dataset, data.ids());
        let a = data.ids().item("a").unwrap() as usize;
        let b = data.ids().item("b").unwrap() as usize;
        assert_eq!(side.titles[a], "Dune");
        assert_eq!(side.texts[a], "Dune (1994). Science fiction. By Frank Herbert");
        // decade, category, maker, and the directed_by triple for "a".
        assert_eq!(side.links[a].len(), 4);
        assert_eq!(side.links[b].len(), 3);
        let shared: Vec<_> = side.links[a].iter().filter(|l| side.links[b].contains(l)).collect();
        assert_eq!(shared.len(), 3, "decade, category and maker are the same entities");
        let (r, _) = *side.links[a].last().unwrap();
        assert_eq!(side.relation_words(r), "director");
    }
}
