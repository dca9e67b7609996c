//go:build windows

package atomicfile

import (
	"os"

	"golang.org/x/sys/windows"
)

// privateSDDL grants full control to SYSTEM, the built-in Administrators and
// the file's owner, and nothing to anyone else; P blocks inherited entries.
const privateSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;OW)"

func restrict(f *os.File, _ os.FileMode, private bool) error {
	if !private {
		return nil
	}
	return setPrivateACL(f.Name())
}

func restrictDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)")
	if err != nil {
		return err
	}
	return applyDACL(dir, sd)
}

func setPrivateACL(path string) error {
	sd, err := windows.SecurityDescriptorFromString(privateSDDL)
	if err != nil {
		return err
	}
	return applyDACL(path, sd)
}

func applyDACL(path string, sd *windows.SECURITY_DESCRIPTOR) error {
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}

// Directories cannot be fsynced on Windows; the rename (MoveFileEx with
// MOVEFILE_REPLACE_EXISTING) is already durable once it returns.
func syncDir(string) error { return nil }
