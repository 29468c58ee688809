//! Sets the `no_root` cfg in a build made by a user other than root: the root-only tests
//! then show as ignored (see `overlay_testkit::root_cfg`).

fn main() {
    overlay_testkit::root_cfg::emit();
}
