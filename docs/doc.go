// Package docs holds the reference pages the README links to, one Markdown
// file per topic, and a test that every relative link and anchor in the
// repository's Markdown resolves, so that moving a section cannot leave a
// link pointing at nothing.
package docs
