//! Scratch disk images for the emulator tests that give the appliance disks: a
//! directory per test, zeroed (sparse) raw images in it, removed when the test is over
//! unless a failure asked to keep them for a post-mortem.

use std::path::PathBuf;

use crate::{Error, Result};

/// The test's disk images, in a directory removed on drop unless `keep` is set.
pub struct DiskImages {
    pub directory: PathBuf,
    /// Leave the directory in place (a check failed: the images are evidence).
    pub keep: bool,
}

impl DiskImages {
    /// A fresh directory `basalt-<suite>-<pid>-<test>` under the temporary directory.
    pub fn new(suite: &str, test: &str) -> Result<Self> {
        let directory = std::env::temp_dir().join(format!("basalt-{suite}-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory)
            .map_err(|error| Error::new(format!("creating {}: {error}", directory.display())))?;
        Ok(Self { directory, keep: false })
    }

    /// Creates the zeroed (sparse) image `file_name` of `bytes` bytes.
    pub fn create(&self, file_name: &str, bytes: u64) -> Result<PathBuf> {
        let path = self.directory.join(file_name);
        let file = std::fs::File::create(&path)
            .map_err(|error| Error::new(format!("creating {}: {error}", path.display())))?;
        file.set_len(bytes).map_err(|error| Error::new(format!("sizing {}: {error}", path.display())))?;
        Ok(path)
    }
}

impl Drop for DiskImages {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.directory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_sparse_files_of_the_size_asked_and_go_with_the_directory() {
        let images = DiskImages::new("unit", "images").unwrap();
        let path = images.create("a.img", 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        let directory = images.directory.clone();
        drop(images);
        assert!(!directory.exists());

        let mut kept = DiskImages::new("unit", "kept").unwrap();
        kept.keep = true;
        let directory = kept.directory.clone();
        drop(kept);
        assert!(directory.exists());
        std::fs::remove_dir_all(directory).unwrap();
    }
}
