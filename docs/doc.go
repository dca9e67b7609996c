// Package docs holds hostcert's documentation (the Markdown files here and
// the README at the root of the repository). It has no code: its test checks
// that the documents stand on their own in a clone — every link stays inside
// the repository and points at a file that exists — and that what they say
// about the shipped unit files matches those files.
package docs
