//! CreateAcls and DeleteAcls on the active controller: which bindings are
//! valid and new, which a filter removes, and the records that say so.
//!
//! Pure: decides from the image, proposes nothing itself (the controller
//! does). Must not: authorize requests (`security::authorizer` does).

use super::commands::TopicError;
use super::metadata::MetadataImage;
use super::records::MetadataRecord;
use crate::protocol::error_codes;
use crate::security::acl::{AclBinding, AclFilter};

/// Each binding's outcome, in order, and the record adding the valid ones
/// not already in the image (none when there are none).
pub fn create(
    image: &MetadataImage,
    bindings: Vec<AclBinding>,
) -> (Vec<Result<(), TopicError>>, Vec<MetadataRecord>) {
    let mut added: Vec<AclBinding> = Vec::new();
    let results = bindings
        .into_iter()
        .map(|binding| {
            binding
                .validate()
                .map_err(|message| TopicError::new(error_codes::INVALID_REQUEST, message))?;
            if !image.acls.contains(&binding) && !added.contains(&binding) {
                added.push(binding);
            }
            Ok(())
        })
        .collect();
    let records = if added.is_empty() {
        Vec::new()
    } else {
        vec![MetadataRecord::CreateAcls { acls: added }]
    };
    (results, records)
}

/// The bindings each filter removes, in order (a binding two filters
/// select is reported by both, as Kafka does), and the record removing
/// them all.
pub fn delete(
    image: &MetadataImage,
    filters: &[AclFilter],
) -> (
    Vec<Result<Vec<AclBinding>, TopicError>>,
    Vec<MetadataRecord>,
) {
    let mut removed: Vec<AclBinding> = Vec::new();
    let results = filters
        .iter()
        .map(|filter| {
            filter
                .validate()
                .map_err(|message| TopicError::new(error_codes::INVALID_REQUEST, message))?;
            let matched: Vec<AclBinding> = image
                .acls
                .iter()
                .filter(|binding| filter.matches(binding))
                .cloned()
                .collect();
            for binding in &matched {
                if !removed.contains(binding) {
                    removed.push(binding.clone());
                }
            }
            Ok(matched)
        })
        .collect();
    let records = if removed.is_empty() {
        Vec::new()
    } else {
        vec![MetadataRecord::RemoveAcls { acls: removed }]
    };
    (results, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{Operation, PatternType, Permission, ResourceType};

    fn binding(name: &str, operation: Operation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission: Permission::Allow,
        }
    }

    fn applied(image: &mut MetadataImage, records: &[MetadataRecord]) {
        image.apply_batch(image.epoch + 1, records);
    }

    #[test]
    fn create_adds_valid_new_bindings_once_and_refuses_invalid_ones() {
        let mut image = MetadataImage::default();
        let bad = AclBinding {
            principal: "alice".into(),
            ..binding("t", Operation::Read)
        };
        let good = binding("t", Operation::Read);
        let (results, records) = create(&image, vec![good.clone(), bad, good.clone()]);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            error_codes::INVALID_REQUEST
        );
        applied(&mut image, &records);
        assert_eq!(image.acls.len(), 1);
        // Again: nothing new, no record.
        let (results, records) = create(&image, vec![good]);
        assert!(results[0].is_ok());
        assert!(records.is_empty());
    }

    #[test]
    fn delete_removes_what_the_filters_select_and_survives_a_snapshot() {
        let mut image = MetadataImage::default();
        let (_, records) = create(
            &image,
            vec![
                binding("a", Operation::Read),
                binding("b", Operation::Read),
                binding("b", Operation::Write),
            ],
        );
        applied(&mut image, &records);
        let restored = MetadataImage::decode(&image.encode()).unwrap();
        assert_eq!(restored.acls, image.acls);
        let filter = AclFilter {
            resource_name: Some("b".into()),
            ..AclFilter::any()
        };
        let (results, records) = delete(&image, &[filter.clone(), filter]);
        assert_eq!(results[0].as_ref().unwrap().len(), 2);
        assert_eq!(results[1].as_ref().unwrap().len(), 2);
        applied(&mut image, &records);
        assert_eq!(image.acls.len(), 1);
        assert_eq!(image.acls.iter().next().unwrap().resource_name, "a");
        let (results, records) = delete(
            &image,
            &[AclFilter {
                resource_name: Some("zzz".into()),
                ..AclFilter::any()
            }],
        );
        assert!(results[0].as_ref().unwrap().is_empty());
        assert!(records.is_empty());
    }
}
